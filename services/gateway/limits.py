"""Per-client-address rate limits for the calls an attacker repeats (registration, code resend,
login, password reset): one token bucket per (kind, address), in memory.

Per instance: with N gateway instances behind a load balancer a client gets up to N times the
budget (a shared store would be needed for an exact global limit; the services' own throttles
— auth's per-account and per-phone limits — stay the hard bound). The table keeps the most
recently seen ``max_clients`` buckets, so a flood of addresses costs bounded memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, *, max_clients: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self.buckets: OrderedDict[tuple[str, str], Bucket] = OrderedDict()

    def take(self, kind: str, client: str) -> float:
        """Take one token: 0 when allowed, else the seconds until one is available."""
        now = self.clock()
        key = (kind, client)
        bucket = self.buckets.pop(key, None)
        if bucket is None:
            bucket = Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        self.buckets[key] = bucket  # most recently seen last
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> int:
        return max(1, math.ceil(wait_s))
