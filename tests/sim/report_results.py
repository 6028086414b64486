"""Synthetic run results, shaped as SIM_SPEC.md fixes them, for the report's tests (no engine needed), and a pixel
counter to check what a picture shows.

Built by hand so that the report is tested on exactly the cases it must handle: a clean run, a run with violations,
fault windows and marks, a vacuous run, and the least a result can be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pixels_near(picture: Path, colour: tuple[int, int, int], tolerance: int = 0) -> int:
    """How many pixels of ``picture`` are within ``tolerance`` of ``colour`` on each of R, G and B."""
    from PIL import Image

    with Image.open(picture) as image:
        counted = image.convert("RGB").getcolors(maxcolors=1 << 26) or []
    return sum(
        count
        for count, rgb in counted
        if isinstance(rgb, tuple) and all(abs(a - b) <= tolerance for a, b in zip(rgb, colour, strict=True))
    )


def _samples(
    nodes: list[str], duration_s: float, step_s: float, visible_drop: dict[str, tuple[float, float]]
) -> list[Any]:
    """10 sessions per node all along; a node listed in ``visible_drop`` shows 0 visible in its (start, end) window."""
    samples: list[Any] = []
    t = 0.0
    while t <= duration_s:
        for node in nodes:
            start, end = visible_drop.get(node, (-1.0, -1.0))
            samples.append({"t": t, "node": node, "running": 10, "visible": 0 if start <= t < end else 10})
        t += step_s
    return samples


def _base(verdict: str, seed: int) -> dict[str, Any]:
    nodes = ["n1", "n2", "n3"]
    return {
        "scenario": "steady",
        "backend": "memory",
        "policy": "hardened",
        "seed": seed,
        "parameters": {"nodes": 3, "sessions": 30, "duration_s": 600.0, "ttl_s": 30.0, "maintenance_interval_s": 5.0},
        "trace_hash": f"{seed:064x}",
        "verdict": verdict,
        "invariants": [
            {"name": "crashed-node-sessions-expire", "status": "holds", "summary": "no node crashed late"},
            {"name": "running-session-visible", "status": "holds", "summary": "every running session was visible"},
            {"name": "per-call-limit", "status": "unknown", "summary": "no call had a limit"},
        ],
        "violations": [],
        "coverage": [{"name": "sessions heartbeated", "met": True}],
        "stats": {"operations": 7321, "simulated_s": 600.0, "wall_s": 0.42, "lost_acknowledged_writes": 0},
        "timeline": {"nodes": nodes, "samples": _samples(nodes, 600.0, 5.0, {}), "faults": [], "marks": []},
        "heartbeat_gaps_s": [5.0 + (i % 7) * 0.01 for i in range(3000)],
        "notes": [],
        "reproduce": f"sessionkv sim run steady --backend memory --policy hardened --seed {seed}",
    }


def clean_result() -> dict[str, Any]:
    """Every invariant held; no faults."""
    return _base("ok", seed=1)


def violated_result() -> dict[str, Any]:
    """Redis lost its data under the faithful policy: n2's sessions stay invisible; a partition on n3; data that must
    be escaped (a session id with markup) and an event of a kind the report does not know."""
    result = _base("violated", seed=7)
    result["scenario"] = "redis-restart-empty"
    result["policy"] = "faithful"
    result["reproduce"] = "sessionkv sim run redis-restart-empty --backend memory --policy faithful --seed 7"
    result["invariants"][1] = {
        "name": "running-session-visible",
        "status": "violated",
        "summary": "10 sessions of n2 ran invisible for 430 s (TTL 30 s)",
        "expected": False,
    }
    first_events = [
        {
            "index": 812,
            "time": 170.0,
            "node": "nemesis",
            "process": "nemesis",
            "type": "info",
            "f": "store_wipe",
            "key": None,
            "value": {"target": "redis"},
            "error": None,
        },
        {
            "index": 813,
            "time": 171.2,
            "node": "n2",
            "process": "n2/maint",
            "type": "invoke",
            "f": "get",
            "key": "sessions/c1/<script>alert(1)</script>",
            "value": None,
            "error": None,
        },
        {
            "index": 814,
            "time": 171.3,
            "node": "n2",
            "process": "n2/maint",
            "type": "ok",
            "f": "teleport",
            "key": None,
            "value": list(range(100)),
            "error": None,
        },
        "not an event at all",
    ]
    result["violations"] = [
        {
            "invariant": "running-session-visible",
            "expected": False,
            "attribution": "node",
            "message": "session c1/s4 ran on n2 but was invisible from 170.0 s to 600.0 s",
            "time": 200.0,
            "node": "n2",
            "first_events": first_events,
        },
        {
            "invariant": "close-within-period",
            "expected": True,
            "attribution": "store",
            "message": "a close request expired while n3 was partitioned",
            "time": 320.0,
            "node": "n3",
            "first_events": [],
        },
    ]
    result["timeline"] = {
        "nodes": ["n1", "n2", "n3"],
        "samples": _samples(["n1", "n2", "n3"], 600.0, 5.0, {"n2": (170.0, 601.0), "n3": (300.0, 360.0)}),
        "faults": [
            {"kind": "store_wipe", "node": None, "start": 170.0, "end": 172.0},
            {"kind": "partition", "node": "n3", "start": 300.0, "end": 360.0},
            {"kind": "slow", "node": "n1", "start": 500.0, "end": None},
        ],
        "marks": [
            {"t": 200.0, "node": "n2", "invariant": "running-session-visible"},
            {"t": 320.0, "node": "n3", "invariant": "close-within-period"},
        ],
    }
    result["heartbeat_gaps_s"] = [5.0] * 2000 + [35.0, 42.5, 61.0, float("nan"), "x"]
    result["notes"] = ["faithful policy: nothing re-registers a session whose record vanished"]
    result["stats"]["lost_acknowledged_writes"] = 30
    return result


def vacuous_result() -> dict[str, Any]:
    """The scenario needed a crash and none happened."""
    result = _base("vacuous", seed=3)
    result["scenario"] = "node-crash"
    result["coverage"] = [{"name": "a node crashed", "met": False}, {"name": "sessions heartbeated", "met": True}]
    return result


def minimal_result() -> dict[str, Any]:
    """The least a result can be: a verdict and nothing else."""
    return {"verdict": "ok"}
