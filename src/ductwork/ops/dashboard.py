"""The dashboard: server-rendered HTML pages of the jobs and their runs, with SVG charts.

No front-end build: each page is one HTML document rendered from the same views as the API
(:mod:`ductwork.ops.views`), a small stylesheet and a few lines of script that refresh the page's
``<main>`` every few seconds. Charts are inline SVG: per job, a bar per recent run (its duration
above, its records below, coloured by status, each a link to the run); per run, a bar per stage
split into busy time and time blocked on input and on output, so the bottleneck shows at a
glance. Every value is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

__all__ = ["ICON", "SCRIPT", "STYLESHEET", "index_page", "job_page", "not_found_page", "run_page"]

STYLESHEET = """\
:root { --ok: #2f9e44; --bad: #e03131; --run: #1c7ed6; --off: #868e96; --warn: #f08c00;
  --busy: #1c7ed6; --in: #a5d8ff; --out: #ffc078; --line: #dee2e6; --muted: #6c757d; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: #212529; background: #f8f9fa; }
header { display: flex; align-items: baseline; gap: 1rem; padding: .8rem 1.5rem;
  background: #212529; color: #f8f9fa; }
header a { color: inherit; text-decoration: none; font-weight: 600; font-size: 1.1rem; }
header .meta { color: #adb5bd; font-size: .85rem; }
main { padding: 1rem 1.5rem 2rem; max-width: 1360px; }
h1 { font-size: 1.3rem; margin: .2rem 0 .8rem; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { padding: .45rem .6rem; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: middle; }
th { font-weight: 600; font-size: .8rem; color: var(--muted); text-transform: uppercase; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, time, code { white-space: nowrap; }
tr.job td:first-child { min-width: 12rem; }
a { color: #1864ab; }
.muted { color: var(--muted); }
.status { display: inline-block; padding: .05rem .5rem; border-radius: 1rem; font-size: .8rem;
  font-weight: 600; color: #fff; background: var(--off); }
.status.succeeded { background: var(--ok); } .status.failed { background: var(--bad); }
.status.running { background: var(--run); } .status.skipped { background: var(--warn); }
.error { color: var(--bad); white-space: pre-wrap; word-break: break-word; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0;
  background: #fff; border: 1px solid var(--line); padding: .8rem 1rem; }
dt { color: var(--muted); } dd { margin: 0; }
svg .bar.succeeded { fill: var(--ok); } svg .bar.failed { fill: var(--bad); }
svg .bar.cancelled, svg .bar.pending { fill: var(--off); } svg .bar.skipped { fill: var(--warn); }
svg .bar.running { fill: var(--run); } svg .records { fill: #74c0fc; }
svg .busy { fill: var(--busy); } svg .wait-input { fill: var(--in); }
svg .wait-output { fill: var(--out); } svg .axis { stroke: var(--line); }
svg a:hover rect { opacity: .75; }
.legend span { display: inline-block; width: .8rem; height: .8rem; margin: 0 .3rem 0 .8rem;
  vertical-align: -.1rem; }
.legend .busy { background: var(--busy); } .legend .wait-input { background: var(--in); }
.legend .wait-output { background: var(--out); }
.bottleneck { font-weight: 600; color: var(--bad); }
.child { margin-left: 1.2rem; border-left: 3px solid var(--line); padding-left: 1rem; }
"""

#: The page icon: three bars of a chart.
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#212529"/>'
    '<rect x="3" y="8" width="2.5" height="5" fill="#2f9e44"/>'
    '<rect x="6.75" y="3" width="2.5" height="10" fill="#1c7ed6"/>'
    '<rect x="10.5" y="6" width="2.5" height="7" fill="#2f9e44"/></svg>'
)

#: Refreshes ``<main>`` in place every ``data-refresh`` seconds while the page is visible.
SCRIPT = """\
const every = Number(document.body.dataset.refresh || 0) * 1000;
if (every > 0) setInterval(async () => {
  if (document.hidden) return;
  const response = await fetch(location.href, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  document.querySelector("main").replaceWith(page.querySelector("main"));
}, every);
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def _when(text: str | None, now: datetime) -> str:
    """``2026-11-10 13:05:00 UTC (3m ago)`` for an ISO time."""
    if not text:
        return '<span class="muted">-</span>'
    moment = datetime.fromisoformat(text).astimezone(UTC)
    seconds = (moment - now).total_seconds()
    ago = _span_text(abs(seconds))
    relative = f"in {ago}" if seconds > 0 else f"{ago} ago"
    return (
        f'<time datetime="{_e(text)}">{moment:%Y-%m-%d %H:%M:%S} UTC</time> '
        f'<span class="muted">({relative})</span>'
    )


def _span_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:.0f}m"
    return f"{seconds // 86400:.0f}d {seconds % 86400 // 3600:.0f}h"


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def _status(status: object) -> str:
    text = str(status) if status is not None else "-"
    return f'<span class="status {_e(text)}">{_e(text)}</span>'


def _page(title: str, body: str, header: str, refresh: float) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · ductwork</title>"
        '<link rel="icon" href="/static/icon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script>'
        f'</head><body data-refresh="{refresh:g}">'
        f'<header><a href="/">ductwork</a><span class="meta">{header}</span></header>'
        f"<main>{body}</main></body></html>\n"
    )


def _header(scheduler: Mapping[str, Any], now: datetime) -> str:
    started = scheduler.get("started_at")
    since = f" since {_when(started, now)}" if started else ""
    return (
        f"scheduler {_e(scheduler['state'])}{since} · {scheduler['runs_in_flight']} run(s) "
        f"in flight · {now:%Y-%m-%d %H:%M:%S} UTC"
    )


# --- charts ----------------------------------------------------------------------------------


def runs_chart(runs: Sequence[Mapping[str, Any]], width: int = 260, height: int = 56) -> str:
    """A bar per run, oldest left: duration above the axis, records below, each a link."""
    if not runs:
        return '<span class="muted">no runs yet</span>'
    ordered = list(reversed(runs))  # runs come newest first
    slot = width / max(len(ordered), 12)
    bar = max(2.0, slot - 2)
    top = height * 0.62
    bottom = height - top - 2
    longest = max(float(r.get("duration_seconds") or 0) for r in ordered) or 1.0
    most = max(int(r.get("records_out") or 0) for r in ordered) or 1
    parts = [
        f'<svg class="runs-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="recent runs">',
        f'<line class="axis" x1="0" x2="{width}" y1="{top:.1f}" y2="{top:.1f}"/>',
    ]
    for i, run in enumerate(ordered):
        duration = float(run.get("duration_seconds") or 0)
        records = int(run.get("records_out") or 0)
        status = str(run.get("status") or "pending")
        x = i * slot + 1
        h = max(3.0, duration / longest * (top - 2))
        r = records / most * bottom
        tip = (
            f"{run.get('started_at') or ''} · {status} · {_seconds(duration)} · "
            f"{records:,} records out"
        )
        href = _path("runs", str(run.get("pipeline") or run.get("name")), str(run["run_id"]))
        parts.append(
            f'<a href="{_e(href)}"><g class="run" data-status="{_e(status)}">'
            f"<title>{_e(tip)}</title>"
            f'<rect class="bar {_e(status)}" x="{x:.1f}" y="{top - h:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}"/>'
            f'<rect class="records" x="{x:.1f}" y="{top + 1:.1f}" width="{bar:.1f}" '
            f'height="{r:.1f}"/></g></a>'
        )
    parts.append("</svg>")
    return "".join(parts)


def stage_bars(stages: Sequence[Mapping[str, Any]], width: int = 320) -> list[str]:
    """Per stage, an SVG bar of busy time, then time blocked on input, then on output, all on
    one scale (the stage with the most time fills the width)."""
    totals = [
        float(s.get("busy_seconds") or 0)
        + float(s.get("wait_input_seconds") or 0)
        + float(s.get("wait_output_seconds") or 0)
        for s in stages
    ]
    scale = width / (max(totals) or 1.0)
    bars = []
    for stage in stages:
        x = 0.0
        rects = []
        for part in ("busy", "wait_input", "wait_output"):
            seconds = float(stage.get(f"{part}_seconds") or 0)
            w = seconds * scale
            label = part.replace("_", " ")
            rects.append(
                f'<rect class="{part.replace("_", "-")}" x="{x:.1f}" y="2" width="{w:.1f}" '
                f'height="14"><title>{_e(label)}: {_e(_seconds(seconds))}</title></rect>'
            )
            x += w
        bars.append(
            f'<svg class="stage-bar" width="{width}" height="18" viewBox="0 0 {width} 18" '
            f'role="img" aria-label="busy and blocked time of {_e(stage.get("name"))}">'
            + "".join(rects)
            + "</svg>"
        )
    return bars


# --- pages -----------------------------------------------------------------------------------


def index_page(
    jobs: Sequence[Mapping[str, Any]],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    scheduler: Mapping[str, Any],
    refresh: float,
    now: datetime | None = None,
) -> str:
    """The jobs: status, next fire, last run, counts and a chart of their recent runs."""
    now = now or datetime.now(UTC)
    rows = []
    for job in jobs:
        last = job["last_run"]
        if last is not None:
            last_text = f"{_status(last['status'])} {_when(last['started_at'], now)}"
            if last["status"] != "running":
                last_text += (
                    f' · <a href="{_e(_path("runs", job["pipeline"], last["run_id"]))}">details</a>'
                )
        else:
            last_text = '<span class="muted">-</span>'
        counts = job["counts"]
        rows.append(
            f'<tr class="job" data-job="{_e(job["name"])}">'
            f'<td><a class="job-name" href="{_e(_path("jobs", job["name"]))}">{_e(job["name"])}</a>'
            f'<div class="muted">{_e(job["description"])}</div></td>'
            f"<td><code>{_e(job['schedule'])}</code>"
            f'<div class="muted">{_e(job["timezone"])}'
            f"{' · ' + _e(job['timescope']) if job['timescope'] else ''}</div></td>"
            f'<td class="job-state">{_status(job["state"])}</td>'
            f"<td>{_when(job['next_fire_time'], now)}</td>"
            f"<td>{last_text}</td>"
            f'<td class="num">{counts["runs"]}<div class="muted">{counts["failed"]} failed'
            f" · {counts['skipped_ticks']} skipped</div></td>"
            f"<td>{runs_chart(runs.get(job['pipeline'], ()))}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>job</th><th>schedule</th><th>status</th><th>next fire</th>"
        '<th>last run</th><th class="num">runs</th><th>recent runs: duration / records</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="muted">no cron jobs</p>'
    )
    body = f"<h1>Jobs</h1>{table}"
    return _page("jobs", body, _header(scheduler, now), refresh)


def job_page(
    job: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]],
    scheduler: Mapping[str, Any],
    refresh: float,
    now: datetime | None = None,
) -> str:
    """One job: its definition, state and its recent runs."""
    now = now or datetime.now(UTC)
    counts = job["counts"]
    details = [
        ("pipeline", _e(job["pipeline"])),
        ("status", _status(job["state"])),
        ("schedule", f"<code>{_e(job['schedule'])}</code> ({_e(job['timezone'])})"),
        ("timescope", _e(job["timescope"] or "-")),
        ("overlap", _e(job["overlap"])),
        ("next fire", _when(job["next_fire_time"], now)),
        (
            "runs",
            f"{counts['runs']} · {counts['succeeded']} succeeded · {counts['failed']} failed · "
            f"{counts['cancelled']} cancelled · {counts['skipped_ticks']} ticks skipped",
        ),
    ]
    if job["params"]:
        details.append(("params", _e(", ".join(f"{k}={v}" for k, v in job["params"].items()))))
    last = job["last_run"]
    if last is not None and last.get("error"):
        details.append(("last error", f'<span class="error">{_e(last["error"])}</span>'))
    rows = []
    for run in runs:
        window = run.get("window")
        window_text = f"{window['start']} → {window['end']}" if window else "-"
        rows.append(
            f'<tr class="run"><td><a href="{_e(_path("runs", job["pipeline"], run["run_id"]))}">'
            f"{_when(run.get('started_at'), now)}</a></td>"
            f"<td>{_status(run.get('status'))}</td><td>{_e(run.get('trigger') or '-')}</td>"
            f"<td>{_e(window_text)}</td>"
            f'<td class="num">{_e(_seconds(float(run.get("duration_seconds") or 0)))}</td>'
            f'<td class="num">{int(run.get("records_in") or 0):,}</td>'
            f'<td class="num">{int(run.get("records_out") or 0):,}</td>'
            f'<td class="error">{_e(run.get("error") or "")}</td></tr>'
        )
    history = (
        "<table><thead><tr><th>started</th><th>status</th><th>trigger</th><th>window</th>"
        '<th class="num">duration</th><th class="num">in</th><th class="num">out</th>'
        f"<th>error</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="muted">no runs recorded yet</p>'
    )
    body = (
        f'<h1>Job {_e(job["name"])}</h1><p class="muted">{_e(job["description"])}</p>'
        f"{_definition(details)}<h2>Recent runs</h2>"
        f"<p>{runs_chart(runs, width=520, height=80)}</p>{history}"
    )
    return _page(f"job {job['name']}", body, _header(scheduler, now), refresh)


def _definition(items: Iterable[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def run_page(
    run: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    live: bool,
    refresh: float,
    now: datetime | None = None,
) -> str:
    """One run: its outcome, each stage's records and busy/blocked time, and its children."""
    now = now or datetime.now(UTC)
    body = f"<h1>Run of {_e(run.get('pipeline') or run['name'])}</h1>" + _run_section(
        run, now, top=True
    )
    if live:
        body = '<p class="muted">in progress: the figures refresh as the run goes on</p>' + body
    return _page(f"run {run['run_id']}", body, _header(scheduler, now), refresh if live else 0)


def _run_section(run: Mapping[str, Any], now: datetime, top: bool) -> str:
    duration = float(run.get("duration_seconds") or 0)
    records_out = int(run.get("records_out") or 0)
    details = [
        ("run id", f"<code>{_e(run['run_id'])}</code>"),
        ("status", _status(run.get("status"))),
        ("kind", _e(run.get("kind") or "pipeline")),
        ("started", _when(run.get("started_at"), now)),
        ("duration", _e(_seconds(duration))),
        (
            "records",
            f"{int(run.get('records_in') or 0):,} in / {records_out:,} out"
            + (f" · {records_out / duration:,.0f} rec/s" if duration > 0 and records_out else ""),
        ),
    ]
    if top:
        window = run.get("window")
        if window:
            details.append(("window", _e(f"{window['start']} → {window['end']}")))
        if run.get("trigger"):
            details.append(("trigger", _e(run["trigger"])))
        if run.get("params"):
            details.append(("params", _e(", ".join(f"{k}={v}" for k, v in run["params"].items()))))
    if int(run.get("attempts") or 1) > 1:
        details.append(("attempts", _e(run["attempts"])))
    if run.get("detail"):
        details.append(("detail", _e(run["detail"])))
    if run.get("error"):
        where = f" (stage {run['error_stage']})" if run.get("error_stage") else ""
        details.append(("error", f'<span class="error">{_e(run["error"])}{_e(where)}</span>'))
    html = _definition(details)
    stages = run.get("stages") or []
    if stages:
        html += _stages_table(stages)
    children = run.get("children") or []
    for child in children:
        html += (
            f'<div class="child"><h2>{_e(child["name"])} '
            f'<span class="muted">({_e(child.get("kind") or "pipeline")})</span></h2>'
            f"{_run_section(child, now, top=False)}</div>"
        )
    return html


def _stages_table(stages: Sequence[Mapping[str, Any]]) -> str:
    busiest = max(range(len(stages)), key=lambda i: float(stages[i].get("busy_seconds") or 0))
    marked = len(stages) > 1 and float(stages[busiest].get("busy_seconds") or 0) > 0
    rows = []
    for i, (stage, bar) in enumerate(zip(stages, stage_bars(stages), strict=True)):
        mark = ' <span class="bottleneck">bottleneck</span>' if marked and i == busiest else ""
        metrics = stage.get("metrics") or {}
        extra = ", ".join(f"{k} {v:g}" for k, v in sorted(metrics.items()))
        rows.append(
            f'<tr class="stage" data-stage="{_e(stage["name"])}">'
            f"<td>{_e(stage['name'])}{mark}"
            f'<div class="muted">{_e(stage.get("kind") or "")}</div></td>'
            f'<td class="num">{int(stage.get("records_in") or 0):,}</td>'
            f'<td class="num">{int(stage.get("records_out") or 0):,}</td>'
            f'<td class="num">{_e(_seconds(float(stage.get("busy_seconds") or 0)))}</td>'
            f'<td class="num">{_e(_seconds(float(stage.get("wait_input_seconds") or 0)))}</td>'
            f'<td class="num">{_e(_seconds(float(stage.get("wait_output_seconds") or 0)))}</td>'
            f'<td>{bar}<div class="muted">{_e(extra)}</div></td></tr>'
        )
    return (
        '<h2>Stages</h2><p class="legend">time:<span class="busy"></span>busy'
        '<span class="wait-input"></span>blocked on input'
        '<span class="wait-output"></span>blocked on output</p>'
        '<table><thead><tr><th>stage</th><th class="num">records in</th>'
        '<th class="num">records out</th><th class="num">busy</th>'
        '<th class="num">blocked on input</th><th class="num">blocked on output</th>'
        f"<th>busy / blocked</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def not_found_page(what: str, scheduler: Mapping[str, Any]) -> str:
    """A 404 page."""
    now = datetime.now(UTC)
    body = f'<h1>Not found</h1><p>{_e(what)}</p><p><a href="/">back to the jobs</a></p>'
    return _page("not found", body, _header(scheduler, now), 0)
