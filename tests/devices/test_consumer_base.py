"""devices/consumer_base.py replaces parts of Channels: these tests fail when Channels
changes underneath, so an upgrade is read against the overrides before it ships."""

from __future__ import annotations

import asyncio
import hashlib
import inspect

import channels
from channels.consumer import AsyncConsumer
from channels.utils import await_many_dispatch

from devices import consumer_base

# The source of what DrainingConsumer replaces, as of CHANNELS_VERSION (first 16 hex
# digits of its SHA-256). A new Channels release: compare its code with the overrides,
# carry over what changed, then update these and CHANNELS_VERSION.
REPLACED = {
    "AsyncConsumer.__call__": (AsyncConsumer.__call__, "e52238720872dbc3"),
    "AsyncConsumer.dispatch": (AsyncConsumer.dispatch, "39f34e7d4fb0f655"),
    "await_many_dispatch": (await_many_dispatch, "30ef889498560da3"),
}


def test_the_installed_channels_is_the_release_the_overrides_copy():
    assert channels.__version__ == consumer_base.CHANNELS_VERSION


def test_the_code_the_overrides_replace_has_not_changed():
    changed = [
        name
        for name, (code, digest) in REPLACED.items()
        if hashlib.sha256(inspect.getsource(code).encode()).hexdigest()[:16] != digest
    ]
    assert changed == [], f"Channels changed {changed}: re-read devices/consumer_base.py against it"


def test_the_phone_consumer_uses_the_replacements():
    from devices.consumers import DeviceConsumer

    assert DeviceConsumer.__call__ is consumer_base.DrainingConsumer.__call__
    assert DeviceConsumer.dispatch is consumer_base.DrainingConsumer.dispatch


async def test_the_inbox_gives_items_in_order_and_makes_writers_wait_when_full():
    inbox = consumer_base.Inbox(2)
    await inbox.put(1)
    await inbox.put(2)
    third = asyncio.ensure_future(inbox.put(3))
    await asyncio.sleep(0)
    assert not third.done()  # full
    assert await inbox.get() == 1
    await asyncio.sleep(0)
    assert third.done()
    assert [await inbox.get(), await inbox.get()] == [2, 3]
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()  # empty: the reader waits for the next item
    await inbox.put(4)
    assert await reader == 4
