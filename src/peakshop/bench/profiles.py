"""Load profiles: open-loop arrival rates over time, as piecewise-linear phases.

A profile is a list of phases; each lasts ``duration`` seconds and its rate goes linearly
from ``start_rate`` to ``end_rate`` (equal for a steady phase), in requests per second.
Request ``k`` (k = 0, 1, 2, ...) is scheduled at the time t_k at which the integral of the
rate, N(t) = ∫ rate, reaches k. In a phase that starts at T0 with N(T0) = N0 and goes from
r0 to r1 over D seconds (slope a = (r1 - r0) / D):

    N(T0 + τ) = N0 + r0·τ + a·τ²/2    so    τ = 2·(k - N0) / (r0 + sqrt(r0² + 2·a·(k - N0)))

(that form of the quadratic's root has no cancellation, holds for a < 0 and for r0 = 0, and
gives τ = (k - N0) / r0 when a = 0). Each t_k is computed from k and its phase's start alone,
never by adding up intervals, so a long run does not drift, and several sender processes
can each take every ``stride``-th request of one schedule (offset 0..stride-1).

The requests scheduled in [0, total duration) are k = 0 .. ceil(N(total)) - 1.
"""

from __future__ import annotations

import bisect
import math
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

MAX_PHASES = 1_000
MAX_RATE = 1_000_000.0
# A phase with this name in a profile file is a warm-up unless it says otherwise: measured,
# but not in the run's totals nor in the SLO verdict.
WARMUP_NAMES = frozenset({"warm-up", "warmup", "warm_up"})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


class ProfileError(ValueError):
    """A profile that cannot be run (bad file, bad numbers)."""


@dataclass(frozen=True, kw_only=True)
class Phase:
    name: str
    duration: float  # seconds
    start_rate: float  # requests per second at the phase's start...
    end_rate: float  # ...and at its end (linear in between)
    measured: bool = True  # False: a warm-up, left out of the totals and of the SLO

    @property
    def arrivals(self) -> float:
        """The integral of the rate over the phase: requests it schedules (fractional)."""
        return (self.start_rate + self.end_rate) / 2 * self.duration

    @property
    def ramp(self) -> bool:
        return self.start_rate != self.end_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "duration_s": self.duration,
            "start_rate": self.start_rate,
            "end_rate": self.end_rate,
            "measured": self.measured,
        }


@dataclass(frozen=True, kw_only=True)
class Profile:
    name: str
    phases: tuple[Phase, ...]
    kind: str = "fixed"  # "stress": steps until the SLO breaks (see stress())
    source: str = "builtin"
    description: str = ""

    def __post_init__(self) -> None:
        if not self.phases:
            raise ProfileError(f"profile {self.name!r} has no phases")
        if len(self.phases) > MAX_PHASES:
            raise ProfileError(f"profile {self.name!r} has over {MAX_PHASES} phases")
        names = [phase.name for phase in self.phases]
        if len(set(names)) != len(names):
            raise ProfileError(f"profile {self.name!r}: phase names must be unique")
        for phase in self.phases:
            if not phase.duration > 0 or not math.isfinite(phase.duration):
                raise ProfileError(f"phase {phase.name!r}: duration must be positive")
            for rate in (phase.start_rate, phase.end_rate):
                if not 0 <= rate <= MAX_RATE:
                    raise ProfileError(f"phase {phase.name!r}: rates must be in [0, {MAX_RATE:g}]")
        if not any(phase.arrivals > 0 for phase in self.phases):
            raise ProfileError(f"profile {self.name!r} schedules no request")

    @property
    def duration(self) -> float:
        return sum(phase.duration for phase in self.phases)

    def scaled(self, factor: float) -> Profile:
        """The same phases with every rate multiplied by ``factor`` (sessions: the arrival
        rate of sessions is the request rate divided by the actions per session)."""
        phases = tuple(
            replace(p, start_rate=p.start_rate * factor, end_rate=p.end_rate * factor)
            for p in self.phases
        )
        return replace(self, phases=phases)

    def to_dict(self) -> dict[str, Any]:
        starts = Schedule(self).phase_starts_s
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "description": self.description,
            "duration_s": self.duration,
            "phases": [
                {**phase.to_dict(), "start_s": start}
                for phase, start in zip(self.phases, starts, strict=True)
            ],
        }


class Schedule:
    """The arrival times of one profile (see the module docstring for the math)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.phases = profile.phases
        self.phase_starts_s: list[float] = []
        self.phase_arrivals: list[float] = []  # N at each phase's start
        time_s = arrivals = 0.0
        for phase in self.phases:
            self.phase_starts_s.append(time_s)
            self.phase_arrivals.append(arrivals)
            time_s += phase.duration
            arrivals += phase.arrivals
        self.duration_s = time_s
        self.total_arrivals = arrivals
        self.total = max(math.ceil(arrivals - 1e-9), 0)

    def time_of(self, k: int) -> tuple[float, int]:
        """(t_k in seconds from the start, index of its phase) of request ``k``."""
        if not 0 <= k < self.total:
            raise IndexError(f"request {k} is outside the schedule (0..{self.total - 1})")
        # The last phase whose N at start is <= k: phases that schedule nothing are skipped.
        index = bisect.bisect_right(self.phase_arrivals, k) - 1
        while self.phases[index].arrivals <= 0:
            index -= 1  # only reached for k exactly at a zero-rate phase's start
        return self._solve(k, index), index

    def _solve(self, k: int, index: int) -> float:
        phase = self.phases[index]
        n = max(k - self.phase_arrivals[index], 0.0)
        r0 = phase.start_rate
        slope = (phase.end_rate - r0) / phase.duration
        # The root without cancellation: exact for a ramp down (slope < 0) and from 0 too.
        root = math.sqrt(max(r0 * r0 + 2 * slope * n, 0.0))
        tau = 0.0 if n == 0 else n / r0 if slope == 0 else 2 * n / (r0 + root)
        return self.phase_starts_s[index] + min(tau, phase.duration)

    def times(self, *, offset: int = 0, stride: int = 1) -> Iterator[tuple[int, int, int]]:
        """(k, t_k in ns from the start, phase index) for k = offset, offset + stride, ...
        Each time is computed from k alone (closed form), never accumulated."""
        if not 0 <= offset < stride:
            raise ValueError("offset must be in [0, stride)")
        for k in range(offset, self.total, stride):
            seconds, phase = self.time_of(k)
            yield k, round(seconds * 1e9), phase

    def arrivals_until(self, seconds: float) -> float:
        """N(t): requests scheduled in [0, t) (fractional), for the live planned counts."""
        if seconds <= 0:
            return 0.0
        if seconds >= self.duration_s:
            return self.total_arrivals
        index = self.phase_at(seconds)
        phase = self.phases[index]
        tau = seconds - self.phase_starts_s[index]
        slope = (phase.end_rate - phase.start_rate) / phase.duration
        return self.phase_arrivals[index] + phase.start_rate * tau + slope * tau * tau / 2

    def phase_at(self, seconds: float) -> int:
        """Index of the phase running at ``seconds`` from the start (the last one after)."""
        return max(bisect.bisect_right(self.phase_starts_s, seconds) - 1, 0)

    def planned_per_phase(self) -> list[int]:
        """Requests each phase schedules: the k with N(phase start) <= k < N(phase end)."""
        bounds = [*self.phase_arrivals, self.total_arrivals]
        counts = []
        for index in range(len(self.phases)):
            low = max(math.ceil(bounds[index] - 1e-9), 0)
            high = min(math.ceil(bounds[index + 1] - 1e-9), self.total)
            counts.append(max(high - low, 0))
        return counts


# --- built-in profiles ------------------------------------------------------------------


def basic(*, rate: float = 100.0, seconds: float = 60.0) -> Profile:
    return Profile(
        name="basic",
        phases=(Phase(name="sustained", duration=seconds, start_rate=rate, end_rate=rate),),
        description=f"{rate:g} req/s sustained for {seconds:g} s",
    )


def spike(*, rate: float = 100.0, burst: float | None = None) -> Profile:
    burst = burst if burst is not None else 5 * rate
    return Profile(
        name="spike",
        phases=(
            Phase(name="baseline", duration=30, start_rate=rate, end_rate=rate),
            Phase(name="spike", duration=10, start_rate=burst, end_rate=burst),
            Phase(name="recovery", duration=30, start_rate=rate, end_rate=rate),
        ),
        description=f"{rate:g} req/s for 30 s, a {burst:g} req/s burst for 10 s, "
        f"{rate:g} req/s for 30 s",
    )


@dataclass(frozen=True, kw_only=True)
class StressSpec:
    start: float = 100.0
    step: float = 100.0
    max: float = 5_000.0
    step_duration: float = 10.0


def stress(
    spec: StressSpec | None = None, *, source: str = "builtin", name: str = "stress"
) -> Profile:
    """Steps of ``step_duration`` s from ``start`` req/s up by ``step`` to ``max``; the run
    stops at the first step that breaks the SLO, and the knee is the last step that met it."""
    spec = spec or StressSpec()
    if spec.start <= 0 or spec.step <= 0 or spec.max < spec.start or spec.step_duration <= 0:
        raise ProfileError("stress: start and step must be positive, max >= start")
    steps = math.floor((spec.max - spec.start) / spec.step + 1e-9) + 1
    if steps > MAX_PHASES:
        raise ProfileError(f"stress: {steps} steps; at most {MAX_PHASES}")
    phases = tuple(
        Phase(
            name=f"step {n + 1} ({spec.start + n * spec.step:g}/s)",
            duration=spec.step_duration,
            start_rate=spec.start + n * spec.step,
            end_rate=spec.start + n * spec.step,
        )
        for n in range(steps)
    )
    return Profile(
        name=name,
        phases=phases,
        kind="stress",
        source=source,
        description=f"steps of {spec.step_duration:g} s from {spec.start:g} req/s by "
        f"{spec.step:g} up to {spec.max:g}, until the SLO breaks",
    )


def endurance(*, rate: float = 100.0, minutes: float = 10.0) -> Profile:
    return Profile(
        name="endurance",
        phases=(Phase(name="endurance", duration=minutes * 60, start_rate=rate, end_rate=rate),),
        description=f"{rate:g} req/s for {minutes:g} min: memory trend and latency drift",
    )


BUILTIN = ("basic", "spike", "stress", "endurance")


def resolve(
    name_or_path: str,
    *,
    rate: float | None = None,
    minutes: float | None = None,
    stress_max: float | None = None,
) -> Profile:
    """A built-in profile by name (``rate`` overrides its base rate: basic and endurance's
    rate, spike's baseline, stress's start and step), or a profile file (TOML; YAML when
    PyYAML is installed)."""
    if name_or_path == "basic":
        return basic(rate=rate or 100.0)
    if name_or_path == "spike":
        return spike(rate=rate or 100.0)
    if name_or_path == "stress":
        step = rate or 100.0
        return stress(StressSpec(start=step, step=step, max=stress_max or 5_000.0))
    if name_or_path == "endurance":
        return endurance(rate=rate or 100.0, minutes=minutes or 10.0)
    path = Path(name_or_path)
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {name_or_path!r}: use {', '.join(BUILTIN)} or a profile file"
        )
    return load_file(path)


def load_file(path: Path) -> Profile:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # optional: TOML needs nothing beyond the standard library
            raise ProfileError(
                "YAML profiles need PyYAML (pip install pyyaml); or use TOML"
            ) from exc
        data = yaml.safe_load(text)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"{path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ProfileError(f"{path}: expected a table at the top")
    return from_mapping(data, default_name=path.stem, source=str(path))


_PROFILE_KEYS = {"name", "description", "kind", "phases", "stress"}
_PHASE_KEYS = {"name", "duration", "rate", "from", "to", "measured"}


def from_mapping(data: Mapping[str, Any], *, default_name: str, source: str) -> Profile:
    _no_unknown(data, _PROFILE_KEYS, "profile")
    name = str(data.get("name", default_name))
    kind = data.get("kind", "fixed")
    if kind == "stress":
        spec = data.get("stress", {})
        if not isinstance(spec, Mapping):
            raise ProfileError("[stress] must be a table")
        _no_unknown(spec, {"start", "step", "max", "step_duration"}, "[stress]")
        values = {
            k: (_duration(v) if k == "step_duration" else _number(v, k)) for k, v in spec.items()
        }
        return stress(StressSpec(**values), source=source, name=name)
    if kind != "fixed":
        raise ProfileError(f"kind must be 'fixed' or 'stress', not {kind!r}")
    raw = data.get("phases")
    if not isinstance(raw, Sequence) or not raw:
        raise ProfileError("a profile needs [[phases]] (name, duration, rate or from/to)")
    return Profile(
        name=name,
        phases=tuple(_phase(item, number) for number, item in enumerate(raw, 1)),
        source=source,
        description=str(data.get("description", "")),
    )


def _phase(item: Any, number: int) -> Phase:
    if not isinstance(item, Mapping):
        raise ProfileError(f"phase {number}: expected a table")
    _no_unknown(item, _PHASE_KEYS, f"phase {number}")
    name = str(item.get("name", f"phase {number}"))
    if "duration" not in item:
        raise ProfileError(f"phase {name!r}: duration is required")
    has_rate, has_ramp = "rate" in item, "from" in item or "to" in item
    if has_rate == has_ramp or (has_ramp and not ("from" in item and "to" in item)):
        raise ProfileError(f"phase {name!r}: give either rate, or from and to")
    start = _number(item["rate"] if has_rate else item["from"], f"{name}.rate")
    end = _number(item["rate"] if has_rate else item["to"], f"{name}.rate")
    measured = item.get("measured", name.lower() not in WARMUP_NAMES)
    if not isinstance(measured, bool):
        raise ProfileError(f"phase {name!r}: measured must be true or false")
    return Phase(
        name=name,
        duration=_duration(item["duration"]),
        start_rate=start,
        end_rate=end,
        measured=measured,
    )


def _duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if match is None:
        raise ProfileError(
            f"bad duration {value!r}: use seconds, or e.g. '500ms', '30s', '5m', '1h'"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"{what}: expected a number, not {value!r}")
    return float(value)


def _no_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
