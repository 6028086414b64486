"""The human-readable report (a plain-text table) and the JSON document of a certification run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Final

from sessionkv.testing.certify.runner import Report

__all__ = ["render_text", "write_json"]

_STATEMENT_WIDTH: Final = 74
_REASON_WIDTH: Final = 96


def render_text(report: Report) -> str:
    """One row per guarantee (id, statement, PASS / FAIL / SKIPPED with reason), then every failure in detail."""
    lines = [
        f"sessionkv certify {report.target}  level={report.level}  seed={report.seed}",
        f"time: {report.mode.describe()}",
        "",
        f"{'ID':<6} {'GUARANTEE':<{_STATEMENT_WIDTH}} RESULT",
        f"{'-' * 6} {'-' * _STATEMENT_WIDTH} {'-' * 8}",
    ]
    for row in report.guarantees:
        statement = textwrap.shorten(row.statement, _STATEMENT_WIDTH, placeholder="...")
        passed = sum(c.status == "PASS" for c in row.checks)
        counted = f" ({passed}/{len(row.checks)})" if row.checks and row.status != "SKIPPED" else ""
        lines.append(f"{row.id:<6} {statement:<{_STATEMENT_WIDTH}} {row.status}{counted}")
        if row.reason:
            for part in textwrap.wrap(row.reason, _REASON_WIDTH):
                lines.append(f"{'':<6}   {part}")
    failed = report.failed
    lines.append("")
    checked = sum(1 for row in report.guarantees for c in row.checks if c.status != "SKIPPED")
    lines.append(f"{len(failed)} of {checked} checks failed" if failed else f"all {checked} checks passed")
    lines.append(f"in {report.duration_s:.2f} s; exit status {report.exit_code}")
    for result in failed:
        lines += ["", f"FAIL {result.name}", *(f"  {p}" for p in textwrap.wrap(result.message, 116))]
        if result.reproduction:
            title = "smallest reproducing sequence" if result.shrunk else "calls the check made"
            lines.append(f"  {title}:")
            lines += [f"    {step}" for step in result.reproduction[-60:]]
            if len(result.reproduction) > 60:
                lines.append(f"    ... ({len(result.reproduction) - 60} earlier calls not shown)")
    return "\n".join(lines) + "\n"


def write_json(report: Report, path: str | Path) -> None:
    """Write the report as JSON (``-`` for standard output is handled by the CLI)."""
    Path(path).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
