"""The worker asks its housekeeping steps less often than callbacks and scheduled sends."""

from messaging import worker


def test_each_step_rests_at_its_own_pace_when_idle():
    rests = dict(zip(worker.STEPS, worker.idle_sleeps(), strict=True))
    assert rests["ipn.delivery.deliver_one_due_event"] == worker.CALLBACK_IDLE_SLEEP < worker.IDLE_SLEEP
    assert rests["messaging.services.dispatch.offer_due_scheduled_messages"] == worker.IDLE_SLEEP
    assert rests["messaging.services.dispatch.requeue_one_expired_lease"] == worker.HOUSEKEEPING_IDLE_SLEEP
    assert worker.HOUSEKEEPING_STEPS | worker.CALLBACK_STEPS <= set(worker.STEPS)  # no name left behind by a rename
