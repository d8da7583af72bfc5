"""The reports of a chaos run: ``report.json`` for machines, ``report.html`` for people.

``report.json`` is ``{"passed": bool, "experiments": [summary, ...]}`` with each summary as
:meth:`ExperimentResult.summary` writes it. ``report.html`` is one self-contained page (no
scripts, no external assets): per experiment a table of faults, alerts (expected, fired,
resolved, with times), invariants and recovery, and an inline SVG timeline of the faults,
each alert's pending/firing states and the steady state after the faults.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from interlock.chaos._runner import ExperimentResult

_ROW = 18  # px per timeline lane
_LEFT = 190  # px for lane labels
_WIDTH = 900
_COLOURS = {"fault": "#7b4fd6", "pending": "#f2b233", "firing": "#d64545",
            "steady": "#3a9a5b", "unsteady": "#b0b0b0"}  # fmt: skip


def report(results: list[ExperimentResult]) -> dict[str, Any]:
    return {
        "passed": bool(results) and all(r.passed for r in results),
        "experiments": [r.summary() for r in results],
    }


def write_reports(results: list[ExperimentResult], out: Path) -> dict[str, Any]:
    """Write ``out/report.json`` and ``out/report.html``; returns the JSON document."""
    out.mkdir(parents=True, exist_ok=True)
    document = report(results)
    (out / "report.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (out / "report.html").write_text(html_report(results, document), encoding="utf-8")
    return document


def _intervals(times: list[float], states: list[bool], end: float) -> list[tuple[float, float]]:
    spans, began = [], None
    for t, on in zip(times, states, strict=True):
        if on and began is None:
            began = t
        elif not on and began is not None:
            spans.append((began, t))
            began = None
    if began is not None:
        spans.append((began, end))
    return spans


def timeline_svg(result: ExperimentResult) -> str:
    """An SVG of the run: one lane per fault, per alert seen, and the steady state."""
    obs = result.observations
    ends = [f["ended_s"] or 0.0 for f in result.faults]
    end = max([o.t for o in obs] + ends + [1.0])
    scale = (_WIDTH - _LEFT - 10) / end
    lanes: list[tuple[str, list[tuple[float, float]], str]] = []
    for fault in result.faults:
        if fault["injected_s"] is not None:
            span = (fault["injected_s"], fault["ended_s"] or end)
            lanes.append((f"{fault['kind']}:{fault['target']}", [span], _COLOURS["fault"]))
    times = [o.t for o in obs]
    names = sorted({n for o in obs for n in (*o.firing, *o.pending)}
                   | {a.alert for a in result.alerts})  # fmt: skip
    for name in names:
        pending = _intervals(times, [name in o.pending for o in obs], end)
        firing = _intervals(times, [name in o.firing for o in obs], end)
        lanes.append((f"{name} (pending)", pending, _COLOURS["pending"]))
        lanes.append((name, firing, _COLOURS["firing"]))
    probed = [o for o in obs if o.steady is not None]
    if probed:
        spans = _intervals([o.t for o in probed], [bool(o.steady) for o in probed], end)
        lanes.append(("steady state", spans, _COLOURS["steady"]))
    height = _ROW * (len(lanes) + 2)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
             f'font-family="sans-serif" font-size="11">']  # fmt: skip
    for i, (label, spans, colour) in enumerate(lanes):
        y = _ROW * i + 4
        parts.append(f'<text x="4" y="{y + 11}">{escape(label)}</text>')
        parts.append(f'<rect x="{_LEFT}" y="{y}" width="{_WIDTH - _LEFT - 10}" '
                     f'height="{_ROW - 6}" fill="#f3f3f3"/>')  # fmt: skip
        for a, b in spans:
            parts.append(
                f'<rect x="{_LEFT + a * scale:.1f}" y="{y}" '
                f'width="{max((b - a) * scale, 1.5):.1f}" height="{_ROW - 6}" fill="{colour}">'
                f"<title>{escape(label)}: {a:.1f}-{b:.1f} s</title></rect>"
            )
    axis = _ROW * len(lanes) + 4
    step = max(1, round(end / 10))
    for tick in range(0, int(end) + 1, step):
        x = _LEFT + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{axis}" x2="{x:.1f}" y2="{axis + 5}" '
                     f'stroke="#555"/><text x="{x:.1f}" y="{axis + 16}" '
                     f'text-anchor="middle">{tick} s</text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✔" if value else "✘"
    return escape(str(value))


def _experiment_html(result: ExperimentResult) -> str:
    s = result.summary()
    rows = [("fault", s["fault"]), ("passed", s["passed"]),
            ("time to detect (s)", s["time_to_detect_s"]),
            ("time to recover (s)", s["time_to_recover_s"])]  # fmt: skip
    if result.aborted:
        rows.append(("aborted", result.aborted))
    body = [f"<h2>{escape(result.name)} — {'passed' if result.passed else 'FAILED'}</h2>",
            "<table>"] + [f"<tr><th>{k}</th><td>{_cell(v)}</td></tr>" for k, v in rows]
    body.append("</table><h3>Faults</h3><table><tr><th>name</th><th>kind</th><th>target</th>"
                "<th>injected (s)</th><th>ended (s)</th><th>error</th></tr>")  # fmt: skip
    for f in result.faults:
        body.append("<tr>" + "".join(f"<td>{_cell(f[k] or None if k == 'error' else f[k])}</td>"
                    for k in ("name", "kind", "target", "injected_s", "ended_s", "error"))
                    + "</tr>")  # fmt: skip
    body.append("</table><h3>Alerts</h3><table><tr><th>alert</th><th>fired at (s)</th>"
                "<th>resolved at (s)</th><th>in its windows</th></tr>")  # fmt: skip
    for a in result.alerts:
        body.append(f"<tr><td>{escape(a.alert)}</td><td>{_cell(a.fired_at)}</td>"
                    f"<td>{_cell(a.resolved_at)}</td><td>{_cell(a.passed)}</td></tr>")
    body.append("</table><h3>Invariants</h3><table>")
    for name, ok in result.invariants.items():
        detail = result.invariant_details.get(name, "")
        body.append(f"<tr><td>{escape(name)}</td><td>{_cell(ok)}</td>"
                    f"<td>{escape(detail)}</td></tr>")
    body.append("</table>")
    if result.findings:
        body.append("<h3>Findings</h3><ul>" + "".join(
            f"<li>{escape(f)}</li>" for f in result.findings) + "</ul>")  # fmt: skip
    body.append("<h3>Timeline</h3>" + timeline_svg(result))
    return "\n".join(body)


def html_report(results: list[ExperimentResult], document: dict[str, Any]) -> str:
    verdict = "passed" if document["passed"] else "FAILED"
    style = ("body{font-family:sans-serif;margin:2em;max-width:960px}"
             "table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}")  # fmt: skip
    sections = "\n".join(_experiment_html(r) for r in results)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>interlock chaos: "
            f"{verdict}</title><style>{style}</style></head><body>"
            f"<h1>interlock chaos run: {verdict}</h1>{sections}</body></html>\n")  # fmt: skip
