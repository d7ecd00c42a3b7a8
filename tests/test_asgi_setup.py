"""What config.asgi sets up in the Daphne process beside the application."""

import autobahn.util

import config.asgi  # noqa: F401 (its import does the setup)


def test_autobahn_builds_its_unused_debug_arguments_without_colours():
    assert autobahn.util.hl("sendData") == "sendData"  # no ANSI escapes from click
