"""The monitor's last hour at one-second resolution, in bounded memory.

A ring of columns: one ``array`` of machine numbers per field (8 bytes a sample) instead of
3,600 snapshot objects, and the open sales of a sample packed into one ``bytes`` (32 bytes
a sale), shared with the previous sample when nothing moved. One hour of samples takes
about half a megabyte with a few open sales (tests/monitoring/test_units.py measures it
with tracemalloc). Snapshots are rebuilt when read.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Iterator

from peakshop.monitoring.schemas import LatencyMs, QueueNumbers, SaleStock, Snapshot

CAPACITY = 3_600  # one hour of one-second samples
_SALE = struct.Struct("<4q")
_NAN = math.nan

_FLOATS = (
    "requests_per_second",
    "error_rate",
    "client_error_rate",
    "p50",
    "p95",
    "p99",
    "cache_hit_rate",
    "event_loop_lag_ms",
)
_INTS = (
    "depth",
    "in_flight",
    "dead_letters",
    "validation_log_queue",
    "rss_bytes",
    "alerts_active",
)


def _nan(value: float | None) -> float:
    return _NAN if value is None else value


def _none(value: float) -> float | None:
    return None if math.isnan(value) else value


def pack_sales(sales: list[SaleStock]) -> bytes:
    return b"".join(_SALE.pack(s.sale_id, s.remaining, s.reserved, s.sold) for s in sales)


def unpack_sales(packed: bytes) -> list[SaleStock]:
    return [SaleStock(*fields) for fields in _SALE.iter_unpack(packed)]


class History:
    def __init__(self, pid: int, capacity: int = CAPACITY) -> None:
        self.pid = pid
        self.capacity = capacity
        self._at = array("d", bytes(8 * capacity))
        self._floats = {name: array("d", bytes(8 * capacity)) for name in _FLOATS}
        self._ints = {name: array("q", bytes(8 * capacity)) for name in _INTS}
        self._sales: list[bytes] = [b""] * capacity
        self._next = 0  # where the next sample goes
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._next = self._count = 0
        self._sales = [b""] * self.capacity

    def append(self, at: float, snapshot: Snapshot) -> None:
        i = self._next
        self._at[i] = at
        floats, ints = self._floats, self._ints
        floats["requests_per_second"][i] = snapshot.requests_per_second
        floats["error_rate"][i] = snapshot.error_rate
        floats["client_error_rate"][i] = snapshot.client_error_rate
        floats["p50"][i] = _nan(snapshot.latency_ms.p50)
        floats["p95"][i] = _nan(snapshot.latency_ms.p95)
        floats["p99"][i] = _nan(snapshot.latency_ms.p99)
        floats["cache_hit_rate"][i] = _nan(snapshot.cache_hit_rate)
        floats["event_loop_lag_ms"][i] = snapshot.event_loop_lag_ms
        ints["depth"][i] = snapshot.queue.depth
        ints["in_flight"][i] = snapshot.queue.in_flight
        ints["dead_letters"][i] = snapshot.queue.dead_letters
        ints["validation_log_queue"][i] = snapshot.validation_log_queue
        ints["rss_bytes"][i] = snapshot.rss_bytes
        ints["alerts_active"][i] = snapshot.alerts_active
        packed = pack_sales(snapshot.sales)
        if self._count:
            previous = self._sales[(i - 1) % self.capacity]
            if previous == packed:
                packed = previous  # one object for a run of identical samples
        self._sales[i] = packed
        self._next = (i + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def _indexes(self) -> Iterator[int]:
        """Oldest first."""
        start = (self._next - self._count) % self.capacity
        for offset in range(self._count):
            yield (start + offset) % self.capacity

    def int_ago(self, name: str, samples: int, *, default: int) -> int:
        """An integer column ``samples`` samples back (the oldest kept when fewer are)."""
        if not self._count:
            return default
        back = min(samples, self._count)
        return self._ints[name][(self._next - back) % self.capacity]

    def since(self, at: float) -> list[tuple[float, Snapshot]]:
        """The samples taken at or after epoch ``at``, oldest first."""
        floats, ints = self._floats, self._ints
        out = []
        for i in self._indexes():
            if self._at[i] < at:
                continue
            snapshot = Snapshot(
                pid=self.pid,
                requests_per_second=floats["requests_per_second"][i],
                error_rate=floats["error_rate"][i],
                latency_ms=LatencyMs(
                    p50=_none(floats["p50"][i]),
                    p95=_none(floats["p95"][i]),
                    p99=_none(floats["p99"][i]),
                ),
                queue=QueueNumbers(
                    depth=ints["depth"][i],
                    in_flight=ints["in_flight"][i],
                    dead_letters=ints["dead_letters"][i],
                ),
                validation_log_queue=ints["validation_log_queue"][i],
                cache_hit_rate=_none(floats["cache_hit_rate"][i]),
                rss_bytes=ints["rss_bytes"][i],
                event_loop_lag_ms=floats["event_loop_lag_ms"][i],
                sales=unpack_sales(self._sales[i]),
                alerts_active=ints["alerts_active"][i],
                client_error_rate=floats["client_error_rate"][i],
            )
            out.append((self._at[i], snapshot))
        return out
