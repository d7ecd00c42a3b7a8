"""The fan-out channel layer against the real Redis: each test's layers are separate
"server processes" that share one Redis server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
import redis
from django.conf import settings

from devices.lib.channel_layer import FanoutChannelLayer

pytestmark = pytest.mark.asyncio


@pytest.fixture
def redis_url():
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL); CI runs this against the real server")
    return settings.REDIS_URL


@pytest.fixture
def make_layer(redis_url):
    """Layers of one installation (a prefix of their own, so parallel runs do not mix; with
    a colon, as Redis key prefixes often have)."""
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    return lambda: FanoutChannelLayer(hosts=[redis_url], prefix=prefix)


async def receive(layer, channel, timeout=5.0):
    return await asyncio.wait_for(layer.receive(channel), timeout)


async def nothing_before_a_marker(layer, channel, *publishers) -> bool:
    """True if nothing reached `channel` before a marker sent to it now. Publishes on one
    connection run in order, and `publishers` (other layers that published before) are
    waited for first, so the marker comes after anything published earlier; the layer
    keeps that order."""
    for publisher in publishers:
        await asyncio.to_thread(publisher.wait_published)
    await asyncio.to_thread(layer.publish_channel, channel, {"type": "marker"})
    return await receive(layer, channel) == {"type": "marker"}


async def ready(*layers):
    """Waits until each layer's reader has subscribed (a hint sent earlier is lost, as in
    any pub/sub)."""
    for layer in layers:
        assert await asyncio.to_thread(layer.listening.wait, 10), "the reader did not subscribe"


async def test_a_group_message_reaches_each_member_in_every_process_once(make_layer):
    one, two = make_layer(), make_layer()
    a, b, c = await one.new_channel(), await one.new_channel(), await two.new_channel()
    outsider = await two.new_channel()
    for layer, channel in ((one, a), (one, b), (two, c)):
        await layer.group_add("list.1", channel)
    await two.group_add("list.2", outsider)
    await ready(one, two)

    await asyncio.to_thread(one.publish_group, "list.1", {"type": "message.offer", "text": "Ciao ☕"})

    for layer, channel in ((one, a), (one, b), (two, c)):
        assert await receive(layer, channel) == {"type": "message.offer", "text": "Ciao ☕"}
    assert await nothing_before_a_marker(one, a)
    assert await nothing_before_a_marker(two, outsider, one)


async def test_send_reaches_a_channel_in_another_process(make_layer):
    one, two = make_layer(), make_layer()
    target = await two.new_channel()
    await ready(two)  # `one` only sends: it needs no reader
    await one.send(target, {"type": "device.close", "code": 4409})
    assert await receive(two, target) == {"type": "device.close", "code": 4409}


async def member_of(layer, group):
    """A new channel of `layer` in `group`, once the layer listens."""
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    await ready(layer)
    return channel


async def burst(layer, group, count):
    """`count` numbered messages to `group`, published from another thread as fast as it can."""

    def publish():
        for n in range(count):
            layer.publish_group(group, {"type": "n", "n": n})

    await asyncio.to_thread(publish)


async def test_a_burst_arrives_whole_and_in_order(make_layer):
    layer = make_layer()
    channel = await member_of(layer, "list.7")
    await burst(layer, "list.7", 500)
    assert [(await receive(layer, channel))["n"] for _ in range(500)] == list(range(500))


async def test_a_discarded_or_stopped_member_gets_nothing(make_layer):
    layer = make_layer()
    left, stopped, stays = [await layer.new_channel() for _ in range(3)]
    for channel in (left, stopped, stays):
        await layer.group_add("list.3", channel)
    await layer.group_discard("list.3", left)
    waiting = asyncio.create_task(layer.receive(stopped))
    await asyncio.sleep(0)
    waiting.cancel()  # what Channels does when a consumer stops
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await ready(layer)

    await asyncio.to_thread(layer.publish_group, "list.3", {"type": "x"})

    assert await receive(layer, stays) == {"type": "x"}
    assert await nothing_before_a_marker(layer, left)
    assert stopped not in layer._channels and all(stopped not in m for m in layer._groups.values())


async def test_a_full_queue_drops_instead_of_growing(make_layer):
    layer = make_layer()
    layer.capacity = 3
    channel = await member_of(layer, "list.4")
    await burst(layer, "list.4", 10)
    for _ in range(100):
        if layer.dropped == 7:
            break
        await asyncio.sleep(0.02)
    assert layer.dropped == 7
    assert [(await receive(layer, channel))["n"] for _ in range(3)] == [0, 1, 2]


async def test_installations_on_other_databases_do_not_hear_each_other(redis_url):
    base = redis_url.rsplit("/", 1)[0]
    here, there = FanoutChannelLayer(hosts=[f"{base}/3"]), FanoutChannelLayer(hosts=[f"{base}/4"])
    assert here.prefix != there.prefix
    mine, theirs = await here.new_channel(), await there.new_channel()
    await here.group_add("list.1", mine)
    await there.group_add("list.1", theirs)
    await ready(here, there)
    await asyncio.to_thread(here.publish_group, "list.1", {"type": "x"})
    assert await receive(here, mine) == {"type": "x"}
    assert await nothing_before_a_marker(there, theirs, here)


async def test_the_reader_comes_back_after_its_connection_is_killed(make_layer):
    layer = make_layer()
    channel = await member_of(layer, "list.5")
    client = redis.Redis.from_url(layer.address)
    readers = [c for c in client.client_list() if c["name"] == f"{layer.prefix}.reader"]
    assert len(readers) == 1
    client.client_kill_filter(_id=readers[0]["id"])  # as a Redis restart would

    # Published while the reader reconnects, a message is lost (pub/sub): publish until one
    # arrives. The queue is read directly: a cancelled receive would drop the channel.
    queue = layer._channels[channel][1]
    for _ in range(50):
        await asyncio.to_thread(layer.publish_group, "list.5", {"type": "again"})
        with contextlib.suppress(TimeoutError):
            assert await asyncio.wait_for(queue.get(), 0.2) == {"type": "again"}
            return
    raise AssertionError("no message arrived after the subscription was killed")


async def test_publishing_goes_on_after_its_connection_is_killed(make_layer):
    layer = make_layer()
    channel = await member_of(layer, "list.6")
    await asyncio.to_thread(layer.publish_group, "list.6", {"type": "before"})
    assert await receive(layer, channel) == {"type": "before"}
    client = redis.Redis.from_url(layer.address)
    publishers = [c for c in client.client_list() if c["name"] == f"{layer.prefix}.publisher"]
    assert len(publishers) == 1
    client.client_kill_filter(_id=publishers[0]["id"])  # as a Redis restart would
    assert publishers[0]["id"] not in {c["id"] for c in client.client_list()}

    # A write to the closed socket would succeed locally and vanish: the publisher finds
    # the close before writing and goes out on a new connection, losing nothing.
    for n in range(3):
        await asyncio.to_thread(layer.publish_group, "list.6", {"type": "after", "n": n})
    assert [(await receive(layer, channel))["n"] for _ in range(3)] == [0, 1, 2]
    after = [c for c in client.client_list() if c["name"] == f"{layer.prefix}.publisher"]
    assert len(after) == 1 and after[0]["id"] != publishers[0]["id"]
