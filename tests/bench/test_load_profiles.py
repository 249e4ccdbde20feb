"""Load profiles: the piecewise-linear arrival schedule, profile files, session streams."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import pytest

from peakshop.bench import mixes, profiles
from peakshop.bench.profiles import Phase, Profile, ProfileError, Schedule
from peakshop.bench.workload import Endpoint, Request, SessionModel, Workload, stream


def _profile(*phases: Phase) -> Profile:
    return Profile(name="test", phases=phases)


MIXED = _profile(
    Phase(name="warm-up", duration=2, start_rate=10, end_rate=10, measured=False),
    Phase(name="ramp", duration=4, start_rate=0, end_rate=100),
    Phase(name="pause", duration=1, start_rate=0, end_rate=0),
    Phase(name="down", duration=3, start_rate=100, end_rate=20),
)


def test_counts_per_phase_are_the_integrals_of_the_rate() -> None:
    schedule = Schedule(MIXED)
    # 10/s for 2 s; 0 -> 100 over 4 s; nothing; 100 -> 20 over 3 s.
    assert schedule.planned_per_phase() == [20, 200, 0, 180]
    assert schedule.total == 400
    counts = Counter(phase for _, _, phase in schedule.times())
    assert counts == {0: 20, 1: 200, 3: 180}


def test_request_k_is_sent_when_the_integral_reaches_k() -> None:
    schedule = Schedule(MIXED)
    times = list(schedule.times())
    assert times[0] == (0, 0, 0)
    offsets = [offset for _, offset, _ in times]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    for k, offset, _ in times:
        assert schedule.arrivals_until(offset / 1e9) == pytest.approx(k, abs=1e-6)
    # The ramp from 0 at 2 s: N = 20 + 12.5 t^2, so request 21 is at 2 + sqrt(1/12.5) s.
    assert times[21][1] == round((2 + math.sqrt(1 / 12.5)) * 1e9)
    # Nothing in the pause: the next request after the ramp is at the start of "down".
    assert times[220] == (220, 7_000_000_000, 3)
    # A ramp down from 100 to 20 over 3 s: N = 220 + 100 t - 40/3 t^2; request 221 at its root.
    tau = 2 / (100 + math.sqrt(100**2 + 2 * (-80 / 3)))
    assert times[221][1] == round((7 + tau) * 1e9)


def test_times_are_computed_per_slot_and_do_not_drift() -> None:
    # 1/3 s is not exact in floating point: adding intervals would drift over a long run.
    schedule = Schedule(_profile(Phase(name="long", duration=100_000, start_rate=3, end_rate=3)))
    assert schedule.total == 300_000
    assert schedule.time_of(299_999) == (299_999 / 3, 0)
    last = list(schedule.times(offset=299_999 % 7, stride=7))[-1]
    assert last == (299_999, round(299_999 * 1e9 / 3), 0)


def test_strides_share_one_schedule() -> None:
    schedule = Schedule(MIXED)
    whole = list(schedule.times())
    parts = [list(schedule.times(offset=i, stride=3)) for i in range(3)]
    assert sorted(item for part in parts for item in part) == whole
    assert [k for k, _, _ in parts[1][:3]] == [1, 4, 7]
    assert all(item in whole for item in parts[2])
    with pytest.raises(ValueError, match="offset"):
        list(schedule.times(offset=3, stride=3))


def test_a_steady_phase_matches_the_old_fixed_rate_schedule() -> None:
    schedule = Schedule(
        _profile(Phase(name="flat", duration=0.0105, start_rate=1000, end_rate=1000))
    )
    assert schedule.total == 11  # 0 .. 10 ms, like loadgen.planned_requests
    assert [offset for _, offset, _ in schedule.times()] == [n * 1_000_000 for n in range(11)]


def test_builtin_profiles() -> None:
    assert Schedule(profiles.basic()).total == 6_000  # 100 req/s for 60 s
    spike = profiles.spike()
    assert [(p.name, p.start_rate, p.duration) for p in spike.phases] == [
        ("baseline", 100, 30),
        ("spike", 500, 10),
        ("recovery", 100, 30),
    ]
    stress = profiles.stress(profiles.StressSpec(start=100, step=100, max=1000, step_duration=5))
    assert stress.kind == "stress" and [p.start_rate for p in stress.phases] == [
        100.0 * n for n in range(1, 11)
    ]
    assert profiles.endurance(rate=50, minutes=2).duration == 120
    assert profiles.resolve("basic", rate=250).phases[0].start_rate == 250
    with pytest.raises(ProfileError, match="unknown profile"):
        profiles.resolve("nope")


def test_profile_file(tmp_path: Path) -> None:
    path = tmp_path / "rehearsal.toml"
    path.write_text(
        """
        description = "checkout rehearsal"
        [[phases]]
        name = "warm-up"
        duration = "30s"
        rate = 20
        [[phases]]
        name = "ramp"
        duration = "1m"
        from = 20
        to = 200
        [[phases]]
        name = "peak"
        duration = 120
        rate = 200
        [[phases]]
        name = "cool-down"
        duration = "500ms"
        from = 200
        to = 0
        measured = false
        """
    )
    profile = profiles.resolve(str(path))
    assert profile.name == "rehearsal" and profile.source == str(path)
    assert [(p.name, p.duration, p.start_rate, p.end_rate, p.measured) for p in profile.phases] == [
        ("warm-up", 30.0, 20.0, 20.0, False),
        ("ramp", 60.0, 20.0, 200.0, True),
        ("peak", 120.0, 200.0, 200.0, True),
        ("cool-down", 0.5, 200.0, 0.0, False),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[phases]]\nname='a'\nrate=1", "duration is required"),
        ("[[phases]]\nduration=1\nrate=1\nfrom=1\nto=2", "either rate, or from and to"),
        ("[[phases]]\nduration=1\nfrom=1", "either rate, or from and to"),
        ("[[phases]]\nduration='1 week'\nrate=1", "bad duration"),
        ("[[phases]]\nduration=1\nrate=1\nspeed=3", "unknown key"),
        ("[[phases]]\nduration=1\nrate=0", "schedules no request"),
        ("[[phases]]\nduration=-1\nrate=5", "duration must be positive"),
        (
            "[[phases]]\nname='a'\nduration=1\nrate=1\n[[phases]]\nname='a'\nduration=1\nrate=1",
            "unique",
        ),
        ("phases = []", "needs \\[\\[phases\\]\\]"),
    ],
)
def test_bad_profile_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        profiles.load_file(path)


def test_stress_profile_file(tmp_path: Path) -> None:
    path = tmp_path / "stress.toml"
    path.write_text(
        'kind = "stress"\n[stress]\nstart = 500\nstep = 250\nmax = 1500\nstep_duration = "2s"\n'
    )
    profile = profiles.load_file(path)
    assert profile.kind == "stress"
    assert [(p.start_rate, p.duration) for p in profile.phases] == [
        (500.0, 2.0), (750.0, 2.0), (1000.0, 2.0), (1250.0, 2.0), (1500.0, 2.0)
    ]  # fmt: skip


# --- sessions -----------------------------------------------------------------------------


def _sessions(think: float = 0.5) -> Workload:
    endpoints = (
        Endpoint(name="browse", method="GET", route="/a"),
        Endpoint(name="product", method="GET", route="/b"),
    )
    requests = tuple(Request(n % 2, f"/{n}") for n in range(20))
    pools = {"browse": tuple(range(0, 20, 2)), "product": tuple(range(1, 20, 2))}
    return Workload(
        name="sessions",
        endpoints=endpoints,
        requests=requests,
        sessions=SessionModel(script=mixes.storefront_script, pools=pools, think_time_s=think),
    )


def test_session_streams_are_ordered_deterministic_and_split_by_session() -> None:
    workload = _sessions()
    profile = _profile(Phase(name="steady", duration=20, start_rate=100, end_rate=100))
    whole = list(stream(workload, profile, seed=3))
    times = [at for at, _, _, _ in whole]
    assert times == sorted(times) and times[-1] < 20e9
    assert whole == list(stream(workload, profile, seed=3))  # same seed, same run
    assert whole != list(stream(workload, profile, seed=4))
    parts = [list(stream(workload, profile, seed=3, offset=i, stride=2)) for i in range(2)]
    assert sorted(item for part in parts for item in part) == sorted(whole)
    assert {s for *_, s in parts[0]}.isdisjoint({s for *_, s in parts[1]})
    # Sessions arrive at rate / (actions per session): the request rate follows the
    # profile (less what the end cuts off).
    assert 0.85 * 2_000 < len(whole) <= 2_000 * 1.05


def test_session_actions_follow_their_think_times() -> None:
    workload = _sessions(think=2.0)
    profile = _profile(Phase(name="steady", duration=30, start_rate=40, end_rate=40))
    by_session: dict[int, list[int]] = {}
    for at, _, _, session in stream(workload, profile, seed=1):
        by_session.setdefault(session, []).append(at)
    gaps = [b - a for times in by_session.values() for a, b in itertools.pairwise(times)]
    mean = sum(gaps) / len(gaps) / 1e9
    assert 1.6 < mean < 2.4  # exponential, mean 2 s
