"""The report of one simulation run: two pictures and an HTML page a person reads (``sessionkv sim run --report DIR``).

:func:`write_report` takes the run result as a plain mapping (``RunResult.to_json()``, or the ``--json`` file loaded
back) and writes three files into a directory:

* ``timeline.png``: per node, the sessions it believes it runs and those of them the observer saw in the store, over
  time; fault windows shaded (one colour per fault kind), violations marked in red;
* ``heartbeat-gaps.png``: the histogram of the gaps between consecutive acknowledged heartbeats of a session, with
  the record TTL drawn as a line (a gap beyond it means the record could have expired while the session ran);
* ``index.html``: the verdict, the invariants (holds / violated / unknown), the violations with their first events,
  the coverage guards, seed, trace hash, the command that reproduces the run, notes, stats and both pictures.

The report never fails on what a result leaves out or adds: missing optional fields are shown as absent, unknown
event kinds and extra fields are shown as they are. Everything taken from the result is HTML-escaped, so a session id
such as ``<script>`` shows as text. Pictures are drawn with matplotlib's Agg canvas directly (no ``pyplot``, no
global backend switch), so writing a report does not disturb a program that uses matplotlib interactively.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["HEARTBEAT_PICTURE", "INDEX_PAGE", "TIMELINE_PICTURE", "write_report"]

TIMELINE_PICTURE: Final = "timeline.png"
HEARTBEAT_PICTURE: Final = "heartbeat-gaps.png"
INDEX_PAGE: Final = "index.html"

_MAX_NODE_PANELS: Final = 12
"""Above this many nodes the timeline draws one panel of fleet totals instead of one panel per node."""

_MAX_VALUE_CHARS: Final = 160
"""Event values longer than this (as compact JSON) are cut in the HTML, with an ellipsis."""

_DPI: Final = 100

_FAULT_COLOURS: Final = ("#f4a261", "#8ecae6", "#b5838d", "#e9c46a", "#90be6d", "#cdb4db", "#adb5bd", "#ffafcc")

_VERDICT_TEXT: Final = {
    "ok": "every invariant held and the run covered what the scenario needs",
    "violated": "at least one invariant was violated",
    "vacuous": "the run did not cover what the scenario needs, so its green invariants prove nothing",
}


def write_report(result: Mapping[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``timeline.png``, ``heartbeat-gaps.png`` and ``index.html`` for ``result`` into ``directory``.

    ``result`` is the run result mapping described in the module docstring (any subset of its fields). ``directory``
    is created if missing; the three files are overwritten. Returns the path of ``index.html``. Needs matplotlib (the
    ``sim`` extra): without it, raises ``ModuleNotFoundError`` naming the extra before writing anything.
    """
    if not isinstance(result, Mapping):
        raise TypeError(f"result must be a mapping (RunResult.to_json()), got {type(result).__name__}")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ModuleNotFoundError(
            "the simulation report draws its pictures with matplotlib; install it with: pip install 'sessionkv[sim]'",
            name="matplotlib",
        ) from exc
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    run = _Run.read(result)

    timeline = Figure(figsize=(11.0, _timeline_height(run)), dpi=_DPI, layout="constrained")
    _draw_timeline(timeline, run)
    gaps = Figure(figsize=(11.0, 4.0), dpi=_DPI, layout="constrained")
    _draw_heartbeat_gaps(gaps, run)
    for figure, name in ((timeline, TIMELINE_PICTURE), (gaps, HEARTBEAT_PICTURE)):
        FigureCanvasAgg(figure)
        # No "Software" entry (it names the matplotlib version): the bytes depend only on what is drawn.
        figure.savefig(target / name, format="png", dpi=_DPI, metadata={"Software": None})

    index = target / INDEX_PAGE
    index.write_text(_render_html(result, run), encoding="utf-8")
    return index


# -- reading a result defensively ----------------------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> Sequence[Any]:
    return value if isinstance(value, (list, tuple)) else ()


def _number(value: object) -> float | None:
    """A finite float, or ``None`` for anything else (missing, text, bool, NaN, an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _timed(entries: object, time_field: str) -> Iterable[tuple[float, Mapping[str, Any]]]:
    """The entries of a list that are mappings with a finite number at ``time_field``, with that number."""
    for entry in _sequence(entries):
        if isinstance(entry, Mapping) and (t := _number(entry.get(time_field))) is not None:
            yield t, entry


@dataclass
class _Fault:
    kind: str
    node: str | None
    start: float
    end: float | None


@dataclass
class _Mark:
    t: float
    node: str | None
    invariant: str


@dataclass
class _Run:
    """What the pictures need, extracted from a result; every malformed entry is dropped, never raised on."""

    nodes: list[str] = field(default_factory=list)
    series: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # node -> (t, running, visible)
    faults: list[_Fault] = field(default_factory=list)
    marks: list[_Mark] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    dropped_gaps: int = 0
    ttl_s: float | None = None
    maintenance_interval_s: float | None = None
    end: float = 0.0
    real_time: bool = False

    @classmethod
    def read(cls, result: Mapping[str, Any]) -> _Run:
        run = cls()
        parameters = _mapping(result.get("parameters"))
        timeline = _mapping(result.get("timeline"))
        run.real_time = result.get("backend") == "redis"
        run.ttl_s = _number(parameters.get("ttl_s"))
        run.maintenance_interval_s = _number(parameters.get("maintenance_interval_s"))
        for node in _sequence(timeline.get("nodes")):
            run._node(node)
        for t, sample in _timed(timeline.get("samples"), "t"):
            if "node" in sample:
                running, visible = _number(sample.get("running")), _number(sample.get("visible"))
                run.series.setdefault(run._node(sample["node"]), []).append(
                    (t, math.nan if running is None else running, math.nan if visible is None else visible)
                )
        for points in run.series.values():
            points.sort(key=lambda point: point[0])
        run.faults = [
            _Fault(str(fault.get("kind", "fault")), run._known(fault.get("node")), start, _number(fault.get("end")))
            for start, fault in _timed(timeline.get("faults"), "start")
        ]
        run.marks = [
            _Mark(t, run._known(mark.get("node")), str(mark.get("invariant", "violation")))
            for t, mark in _timed(timeline.get("marks"), "t")
        ]
        for gap in _sequence(result.get("heartbeat_gaps_s")):
            number = _number(gap)
            if number is None or number < 0:
                run.dropped_gaps += 1
            else:
                run.gaps.append(number)
        candidates = [
            _number(parameters.get("duration_s")),
            _number(_mapping(result.get("stats")).get("simulated_s")),
            *(t for points in run.series.values() for t, _, _ in points[-1:]),
            *(f.end if f.end is not None else f.start for f in run.faults),
            *(m.t for m in run.marks),
        ]
        run.end = max([c for c in candidates if c is not None] + [0.0])
        return run

    def _node(self, node: object) -> str:
        """The node's name as a string, registered as a timeline panel if new."""
        name = str(node)
        if name not in self.nodes:
            self.nodes.append(name)
        return name

    def _known(self, node: object) -> str | None:
        """The name of a node that has a panel, else ``None``: a fault on the store, or on a node the timeline does
        not list, is shaded across every panel."""
        return None if node is None or str(node) not in self.nodes else str(node)


def _timeline_height(run: _Run) -> float:
    panels = len(run.nodes) if 0 < len(run.nodes) <= _MAX_NODE_PANELS else 1
    return max(3.5, 1.2 + 1.5 * panels)


# -- pictures ------------------------------------------------------------------------------------------------------


def _draw_timeline(figure: Figure, run: _Run) -> None:
    kinds = sorted({fault.kind for fault in run.faults})
    colours = {kind: _FAULT_COLOURS[index % len(_FAULT_COLOURS)] for index, kind in enumerate(kinds)}
    per_node = 0 < len(run.nodes) <= _MAX_NODE_PANELS
    panels: list[tuple[str, list[str]]] = (
        [(node, [node]) for node in run.nodes] if per_node else [(f"all {len(run.nodes)} nodes", list(run.nodes))]
    )
    axes_list: list[Axes] = list(figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    time_label = "time since the run started (s, real time)" if run.real_time else "virtual time (s)"
    figure.suptitle("Sessions running (believed by the node) and visible (seen in the store) per node")
    for axes, (title, members) in zip(axes_list, panels, strict=True):
        times, running, visible = _totals(run, members)
        if times:
            axes.step(times, running, where="post", color="#264653", linewidth=1.6, label="running")
            axes.step(times, visible, where="post", color="#2a9d8f", linewidth=1.2, linestyle="--", label="visible")
        else:
            axes.text(0.5, 0.5, "no samples for this node", transform=axes.transAxes, ha="center", va="center")
        for fault in run.faults:
            if fault.node is None or fault.node in members:
                end = run.end if fault.end is None else fault.end
                if end - fault.start < run.end * 0.01:
                    # an instant fault (a store wipe, a restart) would be a hairline band: draw a bold line instead
                    axes.axvline(fault.start, color=colours[fault.kind], linewidth=4, alpha=0.9)
                else:
                    axes.axvspan(fault.start, end, color=colours[fault.kind], alpha=0.35, linewidth=0)
        for mark in run.marks:
            if mark.node is None or mark.node in members:
                axes.axvline(mark.t, color="#d62828", linewidth=1.2)
                axes.plot([mark.t], [1.0], marker="v", color="#d62828", transform=axes.get_xaxis_transform())
        axes.set_ylabel(title, rotation=0, ha="right", va="center")
        axes.set_ylim(bottom=0)
        axes.grid(True, axis="x", alpha=0.3)
    if not run.nodes:
        axes_list[0].text(0.5, 0.5, "this result has no timeline", transform=axes_list[0].transAxes, ha="center")
    axes_list[-1].set_xlabel(time_label)
    axes_list[-1].set_xlim(0, max(run.end, 1.0))
    _legend(figure, kinds, colours, bool(run.marks))


def _totals(run: _Run, members: Iterable[str]) -> tuple[list[float], list[float], list[float]]:
    """The running and visible counts summed over ``members`` at every sample time (each node holds its last value)."""
    members = [m for m in members if m in run.series]
    if len(members) == 1:
        points = run.series[members[0]]
        return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
    times = sorted({t for m in members for t, _, _ in run.series[m]})
    running: list[float] = []
    visible: list[float] = []
    cursors = dict.fromkeys(members, -1)
    for t in times:
        total_running = total_visible = 0.0
        for m in members:
            points = run.series[m]
            while cursors[m] + 1 < len(points) and points[cursors[m] + 1][0] <= t:
                cursors[m] += 1
            if cursors[m] >= 0:
                total_running += points[cursors[m]][1]
                total_visible += points[cursors[m]][2]
        running.append(total_running)
        visible.append(total_visible)
    return times, running, visible


def _legend(figure: Figure, kinds: list[str], colours: Mapping[str, str], marks: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Line2D([], [], color="#264653", linewidth=1.6, label="running"),
        Line2D([], [], color="#2a9d8f", linewidth=1.2, linestyle="--", label="visible"),
        *(Patch(color=colours[kind], alpha=0.35, label=kind) for kind in kinds),
    ]
    if marks:
        handles.append(Line2D([], [], color="#d62828", marker="v", label="violation"))
    # a figure legend, outside the panels, so that it never hides a node's data
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8), fontsize="small")


def _draw_heartbeat_gaps(figure: Figure, run: _Run) -> None:
    axes = figure.subplots()
    axes.set_title("Gaps between consecutive acknowledged heartbeats of a session")
    axes.set_xlabel("gap (s)")
    axes.set_ylabel("heartbeat pairs")
    if run.gaps:
        upper = max(max(run.gaps), run.ttl_s or 0.0) * 1.05 or 1.0
        counts, _, _ = axes.hist(run.gaps, bins=60, range=(0.0, upper), color="#457b9d")
        if max(counts) >= 100 * max(1.0, min(c for c in counts if c > 0)):
            axes.set_yscale("log")
    else:
        axes.text(0.5, 0.5, "no heartbeat gaps in this result", transform=axes.transAxes, ha="center", va="center")
    if run.maintenance_interval_s is not None:
        axes.axvline(run.maintenance_interval_s, color="#6c757d", linestyle=":", zorder=3, label="maintenance interval")
    if run.ttl_s is not None:
        over = sum(gap > run.ttl_s for gap in run.gaps)
        axes.axvline(run.ttl_s, color="#d62828", linewidth=2, label=f"TTL {run.ttl_s:g} s ({over} gaps beyond it)")
    if run.ttl_s is not None or run.maintenance_interval_s is not None:
        axes.legend(loc="upper center")
    axes.set_xlim(left=0)


# -- the page ------------------------------------------------------------------------------------------------------


def _text(value: object) -> str:
    return html.escape(value if isinstance(value, str) else _format(value), quote=True)


def _format(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=repr, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    """Rows of already-escaped cells; no header row when ``headers`` is empty."""
    head = "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}">{head}<tbody>{body}</tbody></table>'


def _status(status: object) -> str:
    name = str(status) if status is not None else "unknown"
    css = name if name in ("holds", "violated", "unknown", "ok", "vacuous", "met", "unmet") else "other"
    return f'<span class="badge {css}">{html.escape(name)}</span>'


def _events_table(events: Sequence[Any]) -> str:
    columns = ("index", "time", "node", "process", "type", "f", "key", "value", "error")
    rows: list[list[str]] = []
    for event in events:
        if not isinstance(event, Mapping):
            rows.append([_text(_cut(_format(event)))] + [""] * (len(columns) - 1))
            continue
        rows.append([_text(_cut(_format(event.get(column)))) for column in columns])
    return _table(columns, rows, "events") if rows else "<p>no events recorded for this violation</p>"


def _render_html(result: Mapping[str, Any], run: _Run) -> str:
    verdict = str(result.get("verdict", "unknown"))
    scenario, backend, policy = (result.get(name, "?") for name in ("scenario", "backend", "policy"))
    title = f"sessionkv sim: {scenario} on {backend} ({policy}): {verdict}"
    sections: list[str] = [
        f"<h1>{_text(f'{scenario}')} <small>on {_text(backend)}, policy {_text(policy)}</small></h1>",
        f'<p id="verdict" class="verdict {_text(verdict)}">verdict: <strong>{_text(verdict.upper())}</strong>'
        f" — {_text(_VERDICT_TEXT.get(verdict, 'verdict not recognised by this report'))}</p>",
    ]

    facts = [
        ("seed", _text(result.get("seed"))),
        ("trace hash", f"<code>{_text(result.get('trace_hash'))}</code>"),
        ("reproduce", f"<pre><code>{_text(result.get('reproduce'))}</code></pre>"),
    ]
    parameters = _mapping(result.get("parameters"))
    if parameters:
        facts.append(("parameters", ", ".join(f"{_text(k)}={_text(v)}" for k, v in parameters.items())))
    sections.append(_table((), facts, "facts"))

    invariants = [_mapping(i) for i in _sequence(result.get("invariants"))]
    sections.append("<h2>Invariants</h2>")
    sections.append(
        _table(
            ("invariant", "status", "expected violation", "summary"),
            (
                [_text(i.get("name")), _status(i.get("status")), _text(i.get("expected")), _text(i.get("summary"))]
                for i in invariants
            ),
            "invariants",
        )
        if invariants
        else "<p>this result lists no invariants</p>"
    )

    violations = [_mapping(v) for v in _sequence(result.get("violations"))]
    sections.append(f"<h2>Violations ({len(violations)})</h2>")
    if not violations:
        sections.append("<p>none</p>")
    for number, violation in enumerate(violations, 1):
        expected = "expected" if violation.get("expected") is True else "unexpected"
        sections.append(
            f'<div class="violation {expected}"><h3>{number}. {_text(violation.get("invariant"))}'
            f" <small>({expected}; attributed to {_text(violation.get('attribution'))}; at t="
            f"{_text(violation.get('time'))} on {_text(violation.get('node'))})</small></h3>"
            f"<p>{_text(violation.get('message'))}</p>{_events_table(_sequence(violation.get('first_events')))}</div>"
        )

    coverage = [_mapping(c) for c in _sequence(result.get("coverage"))]
    if coverage:
        sections.append("<h2>Coverage guards</h2>")
        sections.append(
            _table(
                ("what must have happened", "met"),
                ([_text(c.get("name")), _status("met" if c.get("met") is True else "unmet")] for c in coverage),
                "coverage",
            )
        )

    sections.append("<h2>Timeline</h2>")
    sections.append(
        f'<figure><img id="timeline" src="{TIMELINE_PICTURE}" alt="timeline: sessions running and visible per node, '
        f'faults shaded, violations marked"><figcaption>Solid: sessions the node believes it runs; dashed: those '
        f"the observer saw in the store; shaded: fault windows; red: violations.</figcaption></figure>"
    )
    sections.append("<h2>Heartbeat gaps</h2>")
    dropped = f" {run.dropped_gaps} unusable gap values were left out." if run.dropped_gaps else ""
    sections.append(
        f'<figure><img id="heartbeat-gaps" src="{HEARTBEAT_PICTURE}" alt="histogram of heartbeat gaps with the TTL">'
        f"<figcaption>{len(run.gaps)} gaps between consecutive acknowledged heartbeats; a gap beyond the TTL "
        f"(red line) lets the record expire while its session runs.{_text(dropped)}</figcaption></figure>"
    )

    notes = _sequence(result.get("notes"))
    if notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_text(note)}</li>" for note in notes) + "</ul>")
    stats = _mapping(result.get("stats"))
    if stats:
        sections.append("<h2>Stats</h2>")
        sections.append(_table(("stat", "value"), ([_text(k), _text(v)] for k, v in stats.items()), "stats"))

    return _PAGE.format(title=_text(title), body="\n".join(sections))


# The inline script marks each picture loaded or not once the page has loaded (a broken picture also gets a visible
# caption), so a person and a headless browser both see whether the pictures arrived.
_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #212529; }}
h1 small, h3 small {{ color: #6c757d; font-weight: normal; }}
.verdict {{ font-size: 1.3em; padding: 0.6em 1em; border-radius: 6px; }}
.verdict.ok {{ background: #d8f3dc; }} .verdict.violated {{ background: #ffccd5; }}
.verdict.vacuous {{ background: #fff3bf; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
th, td {{ border: 1px solid #dee2e6; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
td {{ overflow-wrap: anywhere; }}
table.events {{ width: 100%; }} table.events td {{ font-family: monospace; font-size: 0.85em; }}
pre {{ margin: 0; white-space: pre-wrap; }}
.badge {{ padding: 0.1em 0.5em; border-radius: 4px; background: #e9ecef; }}
.badge.holds, .badge.ok, .badge.met {{ background: #b7e4c7; }}
.badge.violated, .badge.unmet {{ background: #ffb3c1; }} .badge.unknown {{ background: #ffe066; }}
.violation {{ border-left: 4px solid #d62828; padding-left: 1em; margin-bottom: 1em; }}
.violation.expected {{ border-left-color: #adb5bd; }}
img {{ max-width: 100%; border: 1px solid #dee2e6; }}
.missing {{ color: #d62828; font-weight: bold; }}
</style>
</head>
<body>
{body}
<script>
window.addEventListener("load", function () {{
  for (const img of document.images) {{
    const loaded = img.complete && img.naturalWidth > 0;
    img.dataset.loaded = loaded ? "yes" : "no";
    img.dataset.naturalWidth = String(img.naturalWidth);
    if (!loaded) {{
      const note = document.createElement("p");
      note.className = "missing";
      note.textContent = "could not load " + img.getAttribute("src");
      img.after(note);
    }}
  }}
  document.body.dataset.pictures = "checked";
}});
</script>
</body>
</html>
"""
