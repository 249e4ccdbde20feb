"""A self-contained HTML report of a ``peakshop bench run`` result: one file, no CDN.

The chart library is the dashboard's vendored uPlot (``monitoring/static/vendor/uplot``,
MIT, copied from the npm registry), inlined with its CSS; the charts' data are one JSON
document in ``<script type="application/json" id="bench-data">``; tables are rendered here.
Long runs are averaged into coarser points so that the file stays under ``MAX_BYTES``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

UPLOT_DIR = Path(__file__).resolve().parents[1] / "monitoring" / "static" / "vendor" / "uplot"
MAX_BYTES = 1_000_000
MAX_POINTS = 1_800  # points per chart line: a day-long run is averaged into 48 s points
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600} .fail{color:#c62828;font-weight:600} .warn{color:#9a6700}
.chart{margin:12px 0} .muted{color:#777} code{background:#f4f4f4;padding:1px 4px}
"""

# Builds one uPlot per entry of the data document's "charts"; phase starts as dashed lines.
_JS = """
(function(){
  var doc = JSON.parse(document.getElementById('bench-data').textContent);
  function phaseLines(phases){ return function(u){
    var ctx=u.ctx; ctx.save(); ctx.strokeStyle='#999'; ctx.fillStyle='#666';
    ctx.setLineDash([4,4]); ctx.font='11px sans-serif';
    phases.forEach(function(p){
      var x=Math.round(u.valToPos(p[0],'x',true));
      if(x<u.bbox.left||x>u.bbox.left+u.bbox.width) return;
      ctx.beginPath(); ctx.moveTo(x,u.bbox.top); ctx.lineTo(x,u.bbox.top+u.bbox.height);
      ctx.stroke(); ctx.fillText(p[1],x+3,u.bbox.top+12);
    }); ctx.restore(); }; }
  doc.charts.forEach(function(c){
    var el=document.getElementById('chart-'+c.id); if(!el) return;
    var series=[{label:c.x_label}].concat(c.series.map(function(s){
      return {label:s.label, stroke:s.color, width:1.5, spanGaps:false};}));
    var opts={title:c.title, width:Math.max(el.clientWidth,600), height:260,
      scales:{x:{time:false}}, series:series,
      axes:[{label:c.x_label},{label:c.y_label,size:70}],
      hooks:{draw:[phaseLines(doc.phases||[])]}};
    new uPlot(opts, c.data, el);
  });
})();
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def downsample(
    t: Sequence[float], columns: Sequence[Sequence[Any]], *, kind: Sequence[str]
) -> tuple[list[float], list[list[Any]]]:
    """Average (``kind`` "mean") or take the highest (``"max"``) of consecutive points so
    that at most MAX_POINTS remain; the x of a point is its bucket's first."""
    step = max(-(-len(t) // MAX_POINTS), 1)
    if step == 1:
        return list(t), [list(c) for c in columns]
    xs = [t[i] for i in range(0, len(t), step)]
    out: list[list[Any]] = []
    for column, how in zip(columns, kind, strict=True):
        values: list[Any] = []
        for i in range(0, len(column), step):
            chunk = [v for v in column[i : i + step] if v is not None]
            if not chunk:
                values.append(None)
            elif how == "max":
                values.append(max(chunk))
            else:
                values.append(round(sum(chunk) / len(chunk), 3))
        out.append(values)
    return xs, out


def chart_spec(
    chart_id: str,
    title: str,
    y_label: str,
    t: Sequence[float],
    lines: Sequence[tuple[str, Sequence[Any], str]],
    x_label: str = "s",
) -> dict[str, Any]:
    xs, columns = downsample(t, [line[1] for line in lines], kind=[line[2] for line in lines])
    return {
        "id": chart_id,
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "series": [
            {"label": line[0], "color": COLORS[n % len(COLORS)]} for n, line in enumerate(lines)
        ],
        "data": [xs, *columns],
    }


def charts(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    s = doc["series"]
    t = s["t"]
    out = [
        chart_spec("throughput", "Requests per second", "req/s", t, [
            ("profile rate", s["target_rate"], "mean"),
            ("scheduled", s["offered"], "mean"),
            ("sent", s["sent"], "mean"),
            ("served (answers in)", s["throughput"], "mean"),
        ]),
        chart_spec("latency", "Latency from the scheduled send (served requests)", "ms", t, [
            ("P50", s["p50"], "max"),
            ("P95", s["p95"], "max"),
            ("P99", s["p99"], "max"),
            ("max", s["max"], "max"),
            ("sender lag P99", s["lag_p99"], "max"),
        ]),
        chart_spec("errors", "Failures per second (by scheduled time)", "failures/s", t, [
            ("failures", s["errors"], "mean"),
        ]),
    ]  # fmt: skip
    server = doc["server_metrics"].get("series")
    if doc["server_metrics"]["available"] and server:
        out.append(chart_spec("server", "Server's own view (monitoring history)", "", server["t"], [
            ("server req/s", server["rps"], "mean"),
            ("server P99 ms", server["p99"], "max"),
            ("event-loop lag ms", server["loop_lag_ms"], "max"),
            ("error rate %", [None if v is None else v * 100 for v in server["error_rate"]], "max"),
        ]))  # fmt: skip
    memory = doc.get("memory")
    if memory and memory["samples"]:
        mt = [p[0] for p in memory["samples"]]
        out.append(chart_spec("memory", f"Server RSS ({memory['source']})", "MB", mt, [
            ("RSS MB", [round(p[1] / 1e6, 2) for p in memory["samples"]], "max"),
        ]))  # fmt: skip
    drift = doc.get("drift")
    if drift:
        points = drift["p99_ms_per_minute"]
        out.append(chart_spec("drift", "P99 per minute (latency drift)", "ms", [p[0] for p in points], [
            ("P99", [p[1] for p in points], "max"),
        ], x_label="minute"))  # fmt: skip
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f"<td class=n>{cell}</td>" if n >= numeric_from else f"<td>{cell}</td>"
            for n, cell in enumerate(row)
        ) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def _phases(doc: Mapping[str, Any]) -> str:
    rows = []
    for p in [
        *(p for p in doc["phases"] if p["ran"]),
        {**doc["totals"], "name": "totals", "valid": True, "measured": True},
    ]:
        lat, lag = p["latency_ms"], p.get("lag_ms") or {}
        valid = (
            "<span class=pass>yes</span>"
            if p["valid"]
            else f"<span class=fail title='{escape(p['invalid_reason'])}'>NO</span>"
        )
        rows.append([
            escape(p["name"]) + ("" if p["measured"] else " <span class=muted>(not in totals)</span>"),
            _num(p["offered_rps"], 0), _num(p["throughput_rps"], 0), f"{p['sent']:,}",
            f"{p['failed']:,}", _num(lat["p50"]), _num(lat["p95"]), _num(lat["p99"]),
            _num(lat["max"]), _num(lag.get("p99")), valid,
        ])  # fmt: skip
    return _table(
        [
            "phase",
            "offered/s",
            "served/s",
            "sent",
            "failed",
            "P50 ms",
            "P95 ms",
            "P99 ms",
            "max ms",
            "lag P99 ms",
            "valid",
        ],
        rows,
    )


def _endpoints(doc: Mapping[str, Any]) -> str:
    rows = [
        [escape(label), f"{e['sent']:,}", _num(e["throughput_rps"], 1), f"{e['error_rate']:.2%}",
         _num(e["latency_ms"]["p50"]), _num(e["latency_ms"]["p99"]),
         escape(", ".join(f"{k}: {v}" for k, v in {**e["statuses"], **e["errors"]}.items()))]
        for label, e in doc["totals"]["endpoints"].items()
    ]  # fmt: skip
    return _table(["endpoint", "sent", "served/s", "errors", "P50 ms", "P99 ms", "answers"], rows)


def _verdicts(doc: Mapping[str, Any]) -> str:
    v = doc["verdict"]
    parts = [
        f"<p class={'pass' if v['passed'] else 'fail'}>{'PASSED' if v['passed'] else 'FAILED'} (exit code {v['exit_code']})</p>"
    ]
    parts += [f"<p class=fail>INVALID: {escape(r)}</p>" for r in v["invalid_reasons"]]
    parts += [f"<p class=warn>{escape(w)}</p>" for w in v["warnings"]]
    stress = doc.get("stress")
    if stress:
        parts.append(
            f"<p>Stress knee: <b>{_num(stress['knee_rps'], 0)} req/s</b> (P99 ≤ {stress['p99_ms']:g} ms, "
            f"errors ≤ {stress['error_rate']:.1%}); limited by {escape(stress['limited_by'])}"
            + (
                f"; breached at {stress['breached_at_rps']:g} req/s: {escape(stress['breach_reason'])}"
                if stress["breached_at_rps"] is not None
                else ""
            )
            + "</p>"
        )
    if doc.get("slo"):
        rows = [[escape(c["scope"]), escape(c["metric"]), _num(c["measured"], 4), f"{escape(c['comparison'])} {c['limit']:g}",
                 "<span class=pass>pass</span>" if c["passed"] else "<span class=fail>BREACH</span>", escape(c["note"])]
                for c in doc["slo"]["checks"]]  # fmt: skip
        parts.append(
            f"<p>SLO file <code>{escape(doc['slo']['source'])}</code></p>"
            + _table(
                ["scope", "metric", "measured", "limit", "result", "note"], rows, numeric_from=2
            )
        )
    drift, memory = doc.get("drift"), doc.get("memory")
    if drift:
        parts.append(
            f"<p>Latency drift: P99 {_num(drift['first_minute_p99_ms'])} → {_num(drift['last_minute_p99_ms'])} ms, slope {_num(drift['p99_slope_ms_per_min'], 3)} ms/min</p>"
        )
    if memory:
        parts.append(
            f"<p>Server RSS ({escape(memory['source'])}): {memory['start_bytes'] / 1e6:,.1f} → {memory['end_bytes'] / 1e6:,.1f} MB, peak {memory['peak_bytes'] / 1e6:,.1f} MB, slope {_num((memory['slope_bytes_per_min'] or 0) / 1e6, 3)} MB/min</p>"
        )
    return "".join(parts)


def _machine(doc: Mapping[str, Any]) -> str:
    m = doc["machine"]
    cpu = doc.get("cpu_pct") or {}
    rows = [
        ["CPU", escape(f"{m.get('cpu_model')} ({m.get('logical_cores')} logical cores)")],
        ["memory", escape(f"{(m.get('memory_total_bytes') or 0) / 2**30:,.1f} GiB")],
        ["OS / Python", escape(f"{m.get('os')} / Python {m.get('python')}")],
        ["packages", escape(", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items()))],
        ["commit", escape((m.get("source") or {}).get("commit"))],
        ["target", escape(f"{doc['target']['url']} ({doc['target']['mode']}, {doc['target']['database']})")],
        ["senders", escape(f"{doc['senders']['procs']} process(es), {doc['senders']['connections']} connections, lag limit {doc['senders']['max_lag_ms']:g} ms")],
        ["CPU over the run (% of one core)", escape(", ".join(f"{k} {_num(v, 0)}" for k, v in cpu.items()))],
    ]  # fmt: skip
    return _table(["", ""], rows, numeric_from=9)


def render(doc: Mapping[str, Any], *, title: str | None = None) -> str:
    title = title or f"peakshop bench: {doc['profile']['name']}, {doc['mix']['name']} mix"
    specs = charts(doc)
    data: dict[str, Any] = {
        "charts": specs,
        "phases": [[p["start_s"], p["name"]] for p in doc["profile"]["phases"]][:50],
    }
    return page(
        title=title,
        subtitle=f"{doc['started_at']} · {doc['command']}",
        body=(
            f"<h2>Verdict</h2>{_verdicts(doc)}"
            + "".join(f"<div class=chart id='chart-{escape(c['id'])}'></div>" for c in specs)
            + f"<h2>Phases</h2>{_phases(doc)}<h2>Endpoints (measured phases)</h2>{_endpoints(doc)}"
            + f"<h2>Machine</h2>{_machine(doc)}"
        ),
        data=data,
    )


def page(*, title: str, subtitle: str, body: str, data: Mapping[str, Any]) -> str:
    """An HTML page with uPlot inlined and ``data`` as the charts' JSON document."""
    script = (UPLOT_DIR / "uPlot.iife.min.js").read_text()
    css = (UPLOT_DIR / "uPlot.min.css").read_text()
    # "<" escaped as \\u003c: no "</script>" can end the data early, and the JSON is the same.
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{css}{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=muted>{escape(subtitle)}</p>{body}"
        "<p class=muted>Charts: uPlot (MIT, © Leon Sorokin), inlined.</p>"
        f"<script type='application/json' id='bench-data'>{payload}</script>"
        f"<script>{script}</script><script>{_JS}</script></body></html>"
    )


def write(path: Path, doc: Mapping[str, Any]) -> None:
    text = render(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
