"""How long to wait before starting a crashed process again: Kubernetes' CrashLoopBackOff.

The kubelet waits 10 s after a container's first crash, doubles the wait after each crash up to
5 minutes, and starts again from 10 s once the container has run for 10 minutes without
crashing. The sandbox does the same on a shorter clock: 0.5 s doubling to 30 s, reset after the
process ran for 60 s. A process that cannot start never spins the CPU, and one that crashed once
after a long, healthy run comes back quickly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 0.5  # seconds before the first restart
    cap: float = 30.0  # the longest wait
    reset_after: float = 60.0  # a run this long counts as healthy: the next wait is `initial`

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise ValueError("back-off: need 0 < initial <= cap")
        if self.reset_after <= 0:
            raise ValueError("back-off: reset_after must be positive")

    def next_delay(self, previous: float, ran_for: float) -> float:
        """The wait before the next restart, after a run of `ran_for` seconds.

        `previous` is the wait before the run that just ended (0 if it was not a restart).
        """
        if previous <= 0 or ran_for >= self.reset_after:
            return self.initial
        return min(previous * 2, self.cap)
