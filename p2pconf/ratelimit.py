"""A token bucket, the per-connection flood guard."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows `rate` events per second on average and bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def full(self) -> bool:
        """True when the bucket has refilled completely (its owner has been quiet)."""
        self._refill()
        return self.tokens >= self.burst

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty."""
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
