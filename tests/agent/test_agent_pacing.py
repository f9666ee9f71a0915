"""RateLimiter: sleeps to the period, counts dropped ticks (fake clock, no sleeping)."""
from agent.io.pacing import RateLimiter


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.slept.append(s)
        self.now += s


def test_sleeps_to_the_period_and_counts_drops():
    clock = FakeClock()
    pacer = RateLimiter(10, clock=clock, sleep=clock.sleep)
    assert pacer.wait() == 100.0
    clock.now += 0.03
    assert abs(pacer.wait() - 100.1) < 1e-9 and abs(clock.slept[-1] - 0.07) < 1e-9
    clock.now += 0.35  # now 100.45: ticks 100.2 and 100.3 missed, 100.4 served late
    pacer.wait()
    assert pacer.stats().dropped == 2
    before = clock.now
    pacer.wait()
    assert abs(clock.now - 100.5) < 1e-9 and clock.now > before
    assert pacer.stats().ticks == 4
