"""Alerts with hysteresis: a condition must hold for ``for_seconds`` consecutive evaluations
to fire, and be gone for as many to resolve, so a value that hovers at its threshold does not
flap. Every transition is returned (the monitor publishes it as a system-alert event) and
kept in a bounded list of recent transitions."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from peakshop.monitoring.schemas import ActiveAlert, AlertEvent, AlertRecord

Severity = Literal["warning", "critical"]
RECENT = 100  # transitions kept


@dataclass
class _State:
    severity: Severity
    firing: bool = False
    streak: int = 0  # consecutive evaluations on the other side of the threshold
    since: datetime | None = None
    message: str = ""
    value: float = 0.0
    threshold: float = 0.0


class Alerts:
    def __init__(self, *, pid: int, for_seconds: int) -> None:
        self.pid = pid
        self.for_seconds = for_seconds
        self._states: dict[str, _State] = {}
        self.recent: deque[AlertRecord] = deque(maxlen=RECENT)

    def evaluate(
        self,
        name: str,
        *,
        over: bool,
        value: float,
        threshold: float,
        severity: Severity,
        message: str,
        at: datetime,
        needed: int | None = None,
    ) -> AlertEvent | None:
        """One evaluation of ``name``; the transition it causes, if any. ``needed``
        overrides ``for_seconds`` (an alert evaluated less often than every second)."""
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = _State(severity=severity)
        needed = self.for_seconds if needed is None else needed
        if over != state.firing:
            state.streak += 1
        else:
            state.streak = 0
        if state.firing:
            state.value = value  # the active alert shows the latest value
        if state.streak < needed:
            return None
        state.firing = over
        state.streak = 0
        state.since = at
        state.message, state.value, state.threshold = message, value, threshold
        event = AlertEvent(
            name=name,
            severity=severity,
            state="firing" if over else "resolved",
            message=message,
            value=value,
            threshold=threshold,
            pid=self.pid,
        )
        self.recent.append(
            AlertRecord(
                at=at,
                name=name,
                severity=severity,
                state=event.state,
                message=message,
                value=value,
                threshold=threshold,
                pid=self.pid,
            )
        )
        return event

    @property
    def active_count(self) -> int:
        return sum(1 for state in self._states.values() if state.firing)

    def is_firing(self, name: str) -> bool:
        state = self._states.get(name)
        return state is not None and state.firing

    def active(self) -> list[ActiveAlert]:
        return [
            ActiveAlert(
                name=name,
                severity=state.severity,
                since=state.since or datetime.now(UTC),
                message=state.message,
                value=state.value,
                threshold=state.threshold,
            )
            for name, state in sorted(self._states.items())
            if state.firing
        ]

    def recent_newest_first(self) -> list[AlertRecord]:
        return list(reversed(self.recent))

    def reset(self) -> None:
        """Forget the recent transitions and the streaks; firing alerts stay firing (and
        resolve as usual), so no alert is silently dropped."""
        self.recent.clear()
        for state in self._states.values():
            state.streak = 0
