"""Settings for `bench/send.py`: the real project plus one bare view (see bare_urls)."""

from __future__ import annotations

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_urls"
