"""What the senders send: endpoints, prepared requests, and the time-ordered stream of one
sender's share of a run.

Two shapes of traffic, both open loop:

- **pooled**: request ``k`` of the profile's schedule is ``pool[k % len(pool)]`` (requests
  drawn beforehand in proportion to the mix's weights);
- **sessions** (simulated users): sessions arrive on the profile's schedule, with the
  profile's rates divided by the mean number of actions per session so that the request
  rate follows the profile (delayed by the length of a session). A session is a script of
  actions drawn when it arrives; action ``i`` is sent at the session's arrival plus the sum
  of ``i`` exponential think times, all fixed in advance, so a slow server never slows the
  arrivals down. Actions that would fall after the profile's end are not sent.

Every draw comes from a random generator seeded by (seed, session number), so each sender
process builds exactly its own share (sessions ``offset``, ``offset + stride``, ...) and
two runs with the same seed send the same requests at the same times.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from peakshop.bench.profiles import Profile, Schedule

# In a request body, replaced per request by "<run id>-<session number>" (e.g. a buyer's id
# that is new in each run and the same for every action of one session).
SESSION_TOKEN = b"@@session@@"
MEAN_ACTIONS_SAMPLE = 4_000

Script = Callable[
    [random.Random, float, Mapping[str, Sequence[int]], Mapping[str, float]], list[int]
]


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One kind of request, with the answers that count as served (e.g. a flash sale's
    409 sold_out is an answer, not an error)."""

    name: str
    method: Literal["GET", "POST"]
    route: str  # the route's template, e.g. /api/v1/products/{id}
    ok_statuses: frozenset[int] = frozenset(range(200, 300))
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: bool = False  # a fresh Idempotency-Key header on every request

    @property
    def label(self) -> str:
        return f"{self.method} {self.route}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "method": self.method,
            "route": self.route,
            "ok_statuses": sorted(self.ok_statuses),
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True)
class Request:
    endpoint: int  # index into Workload.endpoints
    target: str  # path and query, appended to the server's URL
    body: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class SessionModel:
    script: Script  # a module-level function (sender processes import it by name)
    pools: Mapping[str, Sequence[int]]  # action -> indices into Workload.requests
    think_time_s: float = 1.0  # mean of the exponential think time between actions
    params: Mapping[str, float] = field(default_factory=dict)

    def mean_actions(self, *, seed: int, duration_s: float) -> float:
        """Actions per session, averaged over sessions arriving across the run (a script may
        depend on the arrival time, e.g. before and after a sale opens)."""
        rng = random.Random(seed)
        total = 0
        for number in range(MEAN_ACTIONS_SAMPLE):
            arrival = duration_s * number / MEAN_ACTIONS_SAMPLE
            total += len(self.script(rng, arrival, self.pools, self.params))
        return max(total / MEAN_ACTIONS_SAMPLE, 1e-9)


@dataclass(frozen=True, kw_only=True)
class Workload:
    name: str
    endpoints: tuple[Endpoint, ...]
    requests: tuple[Request, ...]
    pool: tuple[int, ...] = ()  # pooled traffic: request k is requests[pool[k % len(pool)]]
    sessions: SessionModel | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # what the mix was drawn from

    def __post_init__(self) -> None:
        if (not self.pool) == (self.sessions is None):
            raise ValueError("a workload is either pooled or made of sessions")
        if not self.requests:
            raise ValueError("a workload needs requests")

    def to_dict(self, *, mean_actions: float | None) -> dict[str, Any]:
        sessions = None
        if self.sessions is not None:
            sessions = {
                "think_time_mean_s": self.sessions.think_time_s,
                "mean_actions": mean_actions,
                "params": dict(self.sessions.params),
                "pools": {name: len(ids) for name, ids in self.sessions.pools.items()},
            }
        return {
            "name": self.name,
            "endpoints": [endpoint.to_dict() for endpoint in self.endpoints],
            "requests_prepared": len(self.requests),
            "sessions": sessions,
            "details": dict(self.details),
        }


def session_rng(seed: int, session: int) -> random.Random:
    return random.Random(seed * 1_000_003 + session)


def arrival_profile(workload: Workload, profile: Profile, *, seed: int) -> tuple[Profile, float]:
    """The profile on which requests (pooled) or sessions arrive, and actions per arrival."""
    if workload.sessions is None:
        return profile, 1.0
    mean = workload.sessions.mean_actions(seed=seed, duration_s=profile.duration)
    return profile.scaled(1 / mean), mean


def stream(
    workload: Workload, profile: Profile, *, seed: int, offset: int = 0, stride: int = 1
) -> Iterator[tuple[int, int, int, int]]:
    """(scheduled time in ns from the start, phase index, request index, session number) of
    one sender's share, in time order."""
    arrivals, _ = arrival_profile(workload, profile, seed=seed)
    schedule = Schedule(arrivals)
    if workload.sessions is None:
        pool, size = workload.pool, len(workload.pool)
        for k, offset_ns, phase in schedule.times(offset=offset, stride=stride):
            yield offset_ns, phase, pool[k % size], k
        return
    yield from _sessions(workload.sessions, schedule, seed=seed, offset=offset, stride=stride)


def _sessions(
    model: SessionModel, schedule: Schedule, *, seed: int, offset: int, stride: int
) -> Iterator[tuple[int, int, int, int]]:
    end_ns = round(schedule.duration_s * 1e9)
    mean = model.think_time_s
    pending: list[tuple[int, int, int, int]] = []  # (time ns, tie-break, request, session)
    order = 0
    arrivals = schedule.times(offset=offset, stride=stride)
    upcoming = next(arrivals, None)
    while upcoming is not None or pending:
        if upcoming is not None and (not pending or upcoming[1] <= pending[0][0]):
            session, at_ns, _ = upcoming
            rng = session_rng(seed, session)
            at = at_ns
            for number, request in enumerate(
                model.script(rng, at_ns / 1e9, model.pools, model.params)
            ):
                if number:
                    at += round(rng.expovariate(1 / mean) * 1e9) if mean > 0 else 0
                if at >= end_ns:
                    break
                heapq.heappush(pending, (at, order, request, session))
                order += 1
            upcoming = next(arrivals, None)
            continue
        at, _, request, session = heapq.heappop(pending)
        yield at, schedule.phase_at(at / 1e9), request, session
