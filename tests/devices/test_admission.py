"""devices/lib/admission.py: handshakes taken on at a steady rate, the rest given times to come back."""

from __future__ import annotations

from devices.lib.admission import ANSWER_SHARE, MAX_RETRY_AFTER, TICKET_SHARE, Admission


def test_it_admits_a_burst_then_tells_the_rest_to_try_later():
    admission = Admission(rate=10, burst=10, max_pending=100)
    answers = [admission.enter(now=100.0) for _ in range(15)]
    assert answers[:10] == [None] * 10
    assert all(isinstance(wait, int) and wait >= 1 for wait in answers[10:])
    assert admission.shed == 5


def test_it_refills_at_its_rate():
    admission = Admission(rate=10, burst=10, max_pending=100)
    for _ in range(10):
        admission.enter(now=100.0)
    assert admission.enter(now=100.05) is not None
    assert admission.enter(now=100.2) is None  # 0.2 s at 10/s: two more


def test_it_bounds_the_handshakes_in_progress():
    admission = Admission(rate=1000, burst=1000, max_pending=2)
    assert admission.enter(now=1.0) is None
    assert admission.enter(now=1.0) is None
    assert admission.enter(now=1.0) is not None
    admission.leave()
    assert admission.enter(now=1.0) is None


def test_the_times_to_come_back_spread_the_waiting_phones_over_the_accept_rate():
    admission = Admission(rate=100, burst=1, max_pending=10_000)
    admission.enter(now=0.0)
    waits = [admission.enter(now=0.0) or 0 for _ in range(6000)]
    assert waits[0] == 1 and 40 <= waits[-1] <= 41  # 6,000 phones at 150 a second (TICKET_SHARE 1.5)
    assert waits == sorted(waits)
    assert waits[-1] < MAX_RETRY_AFTER


def test_past_the_last_slot_the_times_are_spread_over_the_windows_second_half_without_taking_slots():
    admission = Admission(rate=100, burst=1, max_pending=10_000)
    admission.enter(now=0.0)
    slots = [admission.enter(now=0.0) or 0 for _ in range(int(100 * TICKET_SHARE * 58.5))]
    assert slots[-1] == MAX_RETRY_AFTER - 1 and slots == sorted(slots)  # 58.5 s of slots handed out
    beyond = [admission.enter(now=0.0) or 0 for _ in range(3000)]
    assert all(MAX_RETRY_AFTER // 2 <= wait <= MAX_RETRY_AFTER for wait in beyond)
    assert len(set(beyond)) > 20  # spread, not all 60 (they came back together, to be told 60 again)
    # The first of them took the window's last slots (up to 60 s); the others took none:
    # 10 s later the next free slot is 50 s away.
    assert MAX_RETRY_AFTER - 0.01 < admission.next_ticket <= MAX_RETRY_AFTER
    assert admission.later(10.0) in (50, 51)


def test_while_busy_it_bounds_the_handshakes_in_progress_and_the_slots_to_what_it_finishes():
    admission = Admission(rate=300, burst=300, max_pending=300)
    now = 0.0
    for _ in range(300):  # a storm: a second's worth taken on at once
        assert admission.enter(now) is None
    assert admission.enter(now) is not None  # busy
    # The process finishes 10 handshakes a second (a loaded machine), for two windows.
    for _ in range(40):
        now += 0.1
        admission.leave()
        admission.enter(now)  # the storm goes on: each is told to wait or taken on
    assert admission.measured is not None and 5 <= admission.measured <= 15
    assert admission.pending_bound() == max(10, int(admission.measured * 2))
    assert admission.slot_rate() == admission.measured
    # Slots now come at about that rate (1.5 times it), not at 300 a second.
    first = admission.later(now)
    waits = [admission.later(now) for _ in range(80)]
    assert waits[-1] - first >= 4  # 80 phones at about 15 a second: about 5 s apart


def test_a_quiet_window_forgets_the_measurement():
    admission = Admission(rate=300, burst=300, max_pending=300)
    admission.measured = 10.0
    admission.window_start = 0.0
    assert admission.enter(3.0) is None  # a window passed with nobody waiting
    assert admission.measured is None and admission.pending_bound() == 300


def test_the_answers_of_a_wave_count_in_what_the_process_is_measured_to_do():
    """Right after a restart the whole fleet's first attempts arrive in a few seconds; the
    process spends them answering "try later", finishes few handshakes, and the slots it
    hands out meanwhile (most of the fleet's) were as slow as that: 10,000 phones all back
    after 69 s. Each answer counts as ANSWER_SHARE of a handshake: 37 s (bench/soak.py)."""
    admission = Admission(rate=300, burst=300, max_pending=300)
    now = 0.0
    for _ in range(300):
        admission.enter(now)
    for _ in range(40):  # two windows: 2 handshakes finished and 200 answered each 0.1 s
        now += 0.1
        admission.leave()
        admission.leave()
        for _ in range(200):
            admission.enter(now)
    finished_only = 20.0
    assert admission.measured is not None
    assert admission.measured >= 0.9 * (finished_only + ANSWER_SHARE * 2000)
    assert admission.slot_rate() > 10 * finished_only
