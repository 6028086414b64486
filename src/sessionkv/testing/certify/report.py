"""The human-readable report (a plain-text table) and the JSON document of a certification run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Final

from sessionkv.testing.certify.runner import CheckResult, Report

__all__ = ["render_text", "summary_line", "write_json"]

_STATEMENT_WIDTH: Final = 74
_REASON_WIDTH: Final = 96


def render_text(report: Report) -> str:
    """One row per guarantee (id, statement, verdict with counts, reasons), a summary line, then every failure,
    inconclusive check and warning in detail, each failure with how to fix it."""
    lines = [
        f"sessionkv certify {report.target}  level={report.level}  seed={report.seed}"
        + ("  --strict" if report.strict else "")
        + ("  --allow-skips" if report.allow_skips else ""),
        f"time: {report.mode.describe()}",
        "",
        f"{'ID':<6} {'GUARANTEE':<{_STATEMENT_WIDTH}} RESULT",
        f"{'-' * 6} {'-' * _STATEMENT_WIDTH} {'-' * 12}",
    ]
    for row in report.guarantees:
        statement = textwrap.shorten(row.statement, _STATEMENT_WIDTH, placeholder="...")
        passed = sum(c.status in ("PASS", "WARN") for c in row.checks)
        counted = f" ({passed}/{len(row.checks)})" if row.checks and row.status != "SKIPPED" else ""
        warned = f", {row.warning_count} warning{'s' * (row.warning_count != 1)}" if row.warning_count else ""
        status = "FAIL" if report.strict and row.status == "WARN" else row.status
        lines.append(f"{row.id:<6} {statement:<{_STATEMENT_WIDTH}} {status}{counted}{warned}")
        if row.reason:
            for part in textwrap.wrap(row.reason, _REASON_WIDTH):
                lines.append(f"{'':<6}   {part}")
    lines += ["", summary_line(report)]
    for result in report.checks:
        if result.status == "FAIL" or (report.strict and result.status == "WARN"):
            lines += ["", f"FAIL {result.name}", *_wrapped(result.message)]
            lines += _warning_lines(result)
            if result.fix:
                lines += _wrapped(f"fix: {result.fix}")
            if result.reproduction:
                title = "smallest reproducing sequence" if result.shrunk else "calls the check made"
                lines.append(f"  {title}:")
                lines += [f"    {step}" for step in result.reproduction[-60:]]
                if len(result.reproduction) > 60:
                    lines.append(f"    ... ({len(result.reproduction) - 60} earlier calls not shown)")
        elif result.status == "INCONCLUSIVE":
            lines += ["", f"INCONCLUSIVE {result.name}", *_wrapped(result.message)]
    warned_checks = [r for r in report.warned if not report.strict]
    if warned_checks:
        lines += ["", "Strictness warnings (finer G14 points; --strict makes them failures):"]
        for result in warned_checks:
            lines.append(f"  WARN {result.name}: {len(result.warnings)}")
            lines += _warning_lines(result)
            if result.fix:
                lines += _wrapped(f"fix: {result.fix}", indent="      ")
    return "\n".join(lines) + "\n"


def summary_line(report: Report) -> str:
    """``N checks: P passed, W with strictness warnings (K warnings), F failed, ...; exit status X`` in one line,
    naming a required check that could not run (the model-based test without hypothesis)."""
    counts = {s: sum(c.status == s for c in report.checks) for s in ("PASS", "WARN", "FAIL", "INCONCLUSIVE")}
    ran = counts["PASS"] + counts["WARN"] + counts["FAIL"] + counts["INCONCLUSIVE"]
    parts = [f"{counts['PASS']} passed"]
    if counts["WARN"]:
        total = sum(len(c.warnings) for c in report.warned)
        verb = "failed under --strict" if report.strict else "passed"
        parts.append(f"{counts['WARN']} {verb} with {total} strictness warning{'s' * (total != 1)}")
    if counts["FAIL"]:
        parts.append(f"{counts['FAIL']} failed")
    if counts["INCONCLUSIVE"]:
        parts.append(f"{counts['INCONCLUSIVE']} inconclusive")
    for result in report.checks:
        if result.status == "SKIPPED" and result.required:
            parts.append(f"{result.name} NOT RUN: {result.message}")
    tail = f"in {report.duration_s:.2f} s; exit status {report.exit_code}"
    if report.incomplete and not report.allow_skips and not report.failed:
        tail += " (incomplete; --allow-skips accepts it)"
    return f"{ran} checks: {', '.join(parts)}; {tail}"


def _wrapped(text: str, indent: str = "  ") -> list[str]:
    return [f"{indent}{part}" for part in textwrap.wrap(text, 116)]


WARNINGS_SHOWN: Final = 6
"""Warnings listed per check in the text report (all of them are in the JSON report)."""


def _warning_lines(result: CheckResult) -> list[str]:
    shown = result.warnings[:WARNINGS_SHOWN]
    lines = [line for warning in shown for line in _wrapped(f"- {warning}", indent="    ")]
    if len(result.warnings) > len(shown):
        lines.append(f"    ... {len(result.warnings) - len(shown)} more (all in the --json report)")
    return lines


def write_json(report: Report, path: str | Path) -> None:
    """Write the report as JSON (``-`` for standard output is handled by the CLI)."""
    Path(path).write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
