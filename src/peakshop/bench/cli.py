"""``peakshop bench``: load tests of the running service (heavy imports wait for the command)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer


def _execute(options: Any, run: Callable[..., int]) -> NoReturn:
    """Check the options, load the settings, run the scenario, exit with its code (2 for a
    usage or configuration error)."""
    from rich.console import Console

    from peakshop.config import SettingsError, load_settings

    try:
        options.check()
        settings = load_settings()
        console = Console()
        if not console.is_terminal:
            console = Console(width=140)  # logs and pipes: keep the tables on one line each
        code = run(options, settings=settings, console=console)
    except (ValueError, SettingsError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


app = typer.Typer(help="Load tests: real HTTP against a running or spawned server.")


@app.command("validate")
def validate(
    url: Annotated[
        str | None, typer.Option(help="A running server, e.g. http://127.0.0.1:8000.")
    ] = None,
    spawn: Annotated[
        bool,
        typer.Option(
            "--spawn",
            help="Start `peakshop serve` on a free port against PEAKSHOP_DATABASE_URL, stop it after.",
        ),
    ] = False,
    requests: Annotated[
        int | None,
        typer.Option(help="Closed loop: requests to send (default 1,000 unless --duration)."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Closed loop: concurrent connections (default 100). Open loop: most connections (default 256)."
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Open loop: requests per second on a fixed schedule.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (open loop default 20).")
    ] = None,
    procs: Annotated[
        int, typer.Option(help="Sender processes, each its own event loop and share of the load.")
    ] = 1,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write everything measured, with the machine, to this file."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Service token (default PEAKSHOP_SERVICE_TOKEN).")
    ] = None,
    compare_minimal: Annotated[
        bool,
        typer.Option(
            "--compare-minimal",
            help="Repeat each run against the minimal app, alternating, and report the ratio.",
        ),
    ] = False,
    minimal_url: Annotated[
        str | None, typer.Option(help="A running minimal app (default: spawn --minimal-app).")
    ] = None,
    minimal_app: Annotated[Path, typer.Option(help="The minimal app to spawn.")] = Path(
        "benchmarks/minimal_app.py"
    ),
    suite: Annotated[
        bool, typer.Option("--suite", help="Measure every target of the issue, end to end.")
    ] = False,
    rounds: Annotated[
        int | None, typer.Option(help="Repetitions of each run (suite: 3 sustained rounds).")
    ] = None,
    mix: Annotated[
        str | None,
        typer.Option(
            help="Request mix as kind=weight,... (kinds: valid_user_specific, valid_time_window, expired, inactive, unknown_code, wrong_owner)."
        ),
    ] = None,
    pool: Annotated[
        int, typer.Option(help="Distinct request bodies built before the run.")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the request mix.")] = 42,
    max_lag_ms: Annotated[
        float, typer.Option(help="Open loop: a send lag P99 above this makes the run invalid.")
    ] = 5.0,
    warmup: Annotated[
        int, typer.Option(help="Requests per server before measuring (not reported).")
    ] = 2_000,
    wait_quiet: Annotated[
        float | None,
        typer.Option(
            help="Before each run, wait up to this many seconds for the machine to be idle "
            "(a shared machine: other people's work would be measured too). "
            "Default: 120 with --suite, else 0."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds before a request counts as a timeout.")
    ] = 30.0,
) -> None:
    """Load-test POST /api/v1/coupons/validate with a request mix drawn from the database.

    Exit code 0 when every run is valid and every target passes, 1 otherwise, 2 on bad usage.
    """
    from rich.console import Console

    from peakshop.bench.mix import MixError
    from peakshop.bench.validate import ValidateOptions, run
    from peakshop.config import SettingsError, load_settings

    options = ValidateOptions(
        url=url,
        spawn=spawn,
        requests=requests,
        concurrency=concurrency,
        rate=rate,
        duration=duration,
        procs=procs,
        json_path=json_path,
        token=token,
        compare_minimal=compare_minimal,
        minimal_url=minimal_url,
        minimal_app=minimal_app,
        suite=suite,
        rounds=rounds,
        mix=mix,
        pool=pool,
        seed=seed,
        max_lag_ms=max_lag_ms,
        warmup=warmup,
        timeout=timeout,
        wait_quiet=wait_quiet,
    )
    try:
        options.check()
        settings = load_settings()
        console = Console()
        if not console.is_terminal:
            console = Console(width=140)  # logs and pipes: keep the tables on one line each
        code = run(options, settings=settings, console=console)
    except (ValueError, SettingsError, MixError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@app.command("flash-sale")
def flash_sale(
    scenario: Annotated[
        str,
        typer.Option(
            help="single-unit (1 unit, 1,000 buyers), limited (5, 1,500), hyper (10,000, 50,000)."
        ),
    ] = "hyper",
    url: Annotated[str | None, typer.Option(help="A running server.")] = None,
    spawn: Annotated[
        bool,
        typer.Option(
            "--spawn",
            help="Start `peakshop serve` (and, in scaled mode, --workers `peakshop worker`s) against the configured database.",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(help="Scaled mode with --spawn: worker processes.")] = 2,
    users: Annotated[
        int | None, typer.Option(help="Distinct buyers (default: the scenario's).")
    ] = None,
    attempts: Annotated[
        int | None, typer.Option(help="Attempts (default: the scenario's).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Open loop: attempts per second (default: closed loop).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Open loop: seconds (default attempts / rate).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Closed loop: connections.")] = 100,
    procs: Annotated[int, typer.Option(help="Sender processes.")] = 1,
    compare_minimal: Annotated[
        bool, typer.Option("--compare-minimal", help="The same attempts against the minimal app.")
    ] = False,
    compare_conventional: Annotated[
        bool,
        typer.Option(
            "--compare-conventional",
            help="Scaled mode: the same attempts against benchmarks/conventional_app.py (SELECT ... FOR UPDATE).",
        ),
    ] = False,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the queue to drain the winners.")
    ] = 120.0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write everything measured to this file.")
    ] = None,
) -> None:
    """Load-test a flash sale: admission under contention, then the verdict from the
    database (oversold must be 0, conservation must hold). Exit code 0 when every target
    passes, 1 otherwise, 2 on bad usage."""

    from peakshop.bench.flash_sale import FlashSaleOptions, run

    options = FlashSaleOptions(
        scenario=scenario,
        url=url,
        spawn=spawn,
        workers=workers,
        users=users,
        attempts=attempts,
        rate=rate,
        duration=duration,
        concurrency=concurrency,
        procs=procs,
        compare_minimal=compare_minimal,
        compare_conventional=compare_conventional,
        drain_timeout=drain_timeout,
        json_path=json_path,
    )
    _execute(options, run)


@app.command("catalog")
def catalog(
    url: Annotated[str | None, typer.Option(help="A running server.")] = None,
    spawn: Annotated[
        bool,
        typer.Option("--spawn", help="Start `peakshop serve` against the configured database."),
    ] = False,
    compare_minimal: Annotated[
        bool, typer.Option("--compare-minimal", help="The first page against the minimal app too.")
    ] = False,
    duration: Annotated[float, typer.Option(help="Seconds of each closed-loop run.")] = 10.0,
    concurrency: Annotated[int, typer.Option(help="Closed loop: connections.")] = 100,
    uncached_rate: Annotated[
        float, typer.Option(help="Open loop rate of the uncached-list run (req/s).")
    ] = 500.0,
    uncached_duration: Annotated[float, typer.Option(help="Seconds of the uncached run.")] = 20.0,
    procs: Annotated[int, typer.Option(help="Sender processes.")] = 1,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write everything measured to this file.")
    ] = None,
) -> None:
    """Load-test the catalog on a seeded database: the cached first page against the minimal
    app, a browse mix with the cache hit rate, and uncached list pages in an open loop."""

    from peakshop.bench.catalog import CatalogOptions, run

    options = CatalogOptions(
        url=url,
        spawn=spawn,
        compare_minimal=compare_minimal,
        duration=duration,
        concurrency=concurrency,
        uncached_rate=uncached_rate,
        uncached_duration=uncached_duration,
        procs=procs,
        json_path=json_path,
    )
    _execute(options, run)


@app.command("run")
def run_profile(
    profile: Annotated[
        str,
        typer.Option(
            help="basic, spike, stress, endurance, or a profile file (TOML; YAML with PyYAML)."
        ),
    ] = "basic",
    mix: Annotated[
        str, typer.Option(help="storefront, flash-sale-day or validate.")
    ] = "storefront",
    url: Annotated[str | None, typer.Option(help="A running server.")] = None,
    spawn: Annotated[
        bool,
        typer.Option("--spawn", help="Start `peakshop serve` against the configured database."),
    ] = False,
    procs: Annotated[int, typer.Option(help="Sender processes sharing one schedule.")] = 1,
    connections: Annotated[
        int, typer.Option(help="Most connections open at once, all senders.")
    ] = 256,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Built-in profiles: the base rate (basic/endurance: the rate; spike: the baseline; stress: start and step)."
        ),
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="endurance: minutes (default 10).")] = None,
    stress_max: Annotated[
        float | None, typer.Option(help="stress: the highest step's rate (default 5,000).")
    ] = None,
    think_time: Annotated[
        float, typer.Option(help="Sessions: mean think time between actions, s (exponential).")
    ] = 1.0,
    sale_at: Annotated[
        float | None,
        typer.Option(
            help="flash-sale-day: seconds into the run when the sale opens (default: the spike/peak phase's start, else a third in)."
        ),
    ] = None,
    sale_units: Annotated[int, typer.Option(help="flash-sale-day: units on sale.")] = 500,
    slo: Annotated[
        Path | None, typer.Option(help="SLO file (TOML): a breach exits with 1.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the result (JSON, schema_version 1).")
    ] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report.")
    ] = None,
    max_lag_ms: Annotated[
        float, typer.Option(help="A phase whose sender lag P99 exceeds this is invalid.")
    ] = 5.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds before a request counts as a timeout.")
    ] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed of the mix and the sessions.")] = 42,
) -> None:
    """Run a load profile with a traffic mix, open loop: live progress per phase, a JSON
    result, an HTML report. Exit code 0 when the run is valid and every SLO check passes,
    1 otherwise, 2 on bad usage."""
    from rich.console import Console

    from peakshop.bench.loadtest import RunOptions, run
    from peakshop.bench.mix import MixError
    from peakshop.bench.profiles import ProfileError
    from peakshop.bench.slo import SloError
    from peakshop.config import SettingsError, load_settings

    options = RunOptions(
        profile=profile, mix=mix, url=url, spawn=spawn, procs=procs, connections=connections,
        rate=rate, minutes=minutes, stress_max=stress_max, think_time=think_time,
        sale_at=sale_at, sale_units=sale_units, slo=slo, json_path=json_path,
        html_path=html_path, max_lag_ms=max_lag_ms, timeout=timeout, seed=seed,
    )  # fmt: skip
    try:
        options.check()
        settings = load_settings()
        console = Console()
        if not console.is_terminal:
            console = Console(width=140)
        code = run(options, settings=settings, console=console)
    except (ValueError, SettingsError, MixError, ProfileError, SloError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@app.command("compare")
def compare_runs(
    a: Annotated[Path, typer.Argument(help="The baseline result (JSON of `bench run`).")],
    b: Annotated[Path, typer.Argument(help="The result to compare with it.")],
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report.")
    ] = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option(
            "--fail-on-regression", help="Exit with 1 when a metric got worse beyond noise."
        ),
    ] = False,
) -> None:
    """The differences from run A to run B, each with its noise band (from the runs'
    per-second variation, or ±5% when unknown)."""
    from rich.console import Console

    from peakshop.bench import compare

    try:
        doc_a, doc_b = compare.load(a), compare.load(b)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    result = compare.compare(doc_a, doc_b)
    console = Console() if Console().is_terminal else Console(width=140)
    compare.print_comparison(console, result, a=str(a), b=str(b))
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(compare.render_html(result, doc_a, doc_b, a=str(a), b=str(b)))
        console.print(f"wrote {html_path}")
    raise typer.Exit(1 if fail_on_regression and result["regressions"] else 0)
