"""Fleet-wide pacing per airline on a fake clock: budgets, slowing down, growing back."""

from __future__ import annotations

from masterparts import FakeClock

from voe.master.pacing import BACKOFF, BACKOFF_COOLDOWN, MIN_RATE, Pacer, Pacers


def takes(pacer: Pacer, clock: FakeClock, seconds: float, step: float = 0.01) -> int:
    """How many jobs ``pacer`` lets go when asked every ``step`` for ``seconds``."""
    count = 0
    for _ in range(round(seconds / step)):
        clock.advance(step)
        count += pacer.take()
    return count


def test_an_unlimited_airline_is_never_paced():
    clock = FakeClock()
    pacer = Pacers({}, clock).get("demo")
    assert all(pacer.take() for _ in range(10_000))


def test_a_budget_holds_over_time_with_a_small_burst():
    clock = FakeClock()
    pacer = Pacers({"slow": 5.0}, clock).get("slow")
    assert pacer.take() and not pacer.take()  # a burst of one token (5/s x 0.2 s)
    assert 48 <= takes(pacer, clock, 10.0) <= 51


def test_throttling_slows_down_once_per_cooldown_then_grows_back():
    clock = FakeClock()
    pacer = Pacers({"demo": 10.0}, clock).get("demo")
    pacer.throttled(3)
    assert pacer.rate == 10.0 * BACKOFF
    pacer.throttled(3)  # jobs already out keep asking: no second cut within the cooldown
    assert pacer.rate == 10.0 * BACKOFF
    clock.advance(BACKOFF_COOLDOWN)
    pacer.throttled(1)
    assert pacer.rate == 10.0 * BACKOFF * BACKOFF
    assert 3.4 <= takes(pacer, clock, 10.0) / 10.0 <= 4.0  # about 3.6 jobs/s
    rates = []
    for _ in range(20):
        clock.advance(1.0)
        pacer.recover()
        rates.append(pacer.rate)
    assert rates == sorted(rates) and rates[-1] == 10.0  # back to the budget, not past it


def test_recovery_waits_a_quiet_second():
    clock = FakeClock()
    pacer = Pacer("demo", 10.0, clock)
    pacer.throttled(1)
    clock.advance(0.5)
    pacer.recover()
    assert pacer.rate == 10.0 * BACKOFF


def test_an_unlimited_airline_that_throttles_is_paced_at_its_observed_rate():
    clock = FakeClock()
    pacer = Pacer("demo", None, clock)
    assert takes(pacer, clock, 2.0) == 200  # 100 jobs/s observed
    pacer.throttled(1)
    assert 100 * BACKOFF * 0.9 <= pacer.rate <= 100 * BACKOFF * 1.1
    for _ in range(200):
        clock.advance(1.0)
        pacer.recover()
    assert pacer.rate is None  # unlimited again once recovered far enough


def test_the_slowest_pace_has_a_floor():
    clock = FakeClock()
    pacer = Pacer("demo", 1.0, clock)
    for _ in range(10):
        clock.advance(BACKOFF_COOLDOWN)
        pacer.throttled(1)
    assert pacer.rate == MIN_RATE
