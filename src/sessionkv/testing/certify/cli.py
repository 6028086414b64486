"""``sessionkv certify TARGET [--json PATH] [--level seed|full] [--seed N] [--real-time] [--strict] [--allow-skips]``.

Exit status: 0 when every correctness check passes (strictness warnings allowed), 1 when any fails (or, with
``--strict``, has a strictness warning), 2 for a usage or import error, 3 when the run is incomplete (an INCONCLUSIVE
real-time check, or the model-based test could not run) unless ``--allow-skips``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from sessionkv.testing.certify.report import render_text
from sessionkv.testing.certify.runner import Report, TargetError, certify, load_target, prepare_backend

__all__ = ["build_parser", "main"]

EXIT_USAGE = 2


def build_parser(prog: str = "sessionkv certify") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Certify a SessionKVStore backend against the sessionkv contract (G01-G16 and a model-based test).",
    )
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="package.module:callable returning a new, not yet started store; if it accepts clock=, expiry is "
        "checked on a virtual clock",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH ('-' for stdout)")
    parser.add_argument(
        "--level",
        choices=("seed", "full"),
        default="full",
        help="seed: only what the vision-agents reference states; full (default): the whole sessionkv contract",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the model-based test (default 0)")
    parser.add_argument(
        "--real-time", action="store_true", help="use short real TTLs even if the factory accepts clock="
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="strictness warnings (finer G14 argument points) are failures: exit status 1",
    )
    parser.add_argument(
        "--allow-skips",
        action="store_true",
        help="exit 0 even if the run is incomplete (INCONCLUSIVE checks, or the model-based test could not run)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the certification and return the exit status (never calls ``sys.exit``)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 for --help
        return int(exc.code or 0)
    try:
        report = asyncio.run(_run(args))
    except TargetError as exc:
        print(f"sessionkv certify: error: {exc}", file=err)
        return EXIT_USAGE
    text = render_text(report)
    if args.json == "-":
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False), file=out)
        print(text, file=err, end="")
    else:
        print(text, file=out, end="")
        if args.json:
            try:
                with open(args.json, "w", encoding="utf-8") as handle:
                    json.dump(report.to_json(), handle, indent=2, ensure_ascii=False)
                    handle.write("\n")
            except OSError as exc:
                print(f"sessionkv certify: error: cannot write --json {args.json!r}: {exc}", file=err)
                return EXIT_USAGE
    return report.exit_code


async def _run(args: argparse.Namespace) -> Report:
    factory = load_target(args.target)
    backend = await prepare_backend(factory, name=args.target)
    return await certify(
        backend,
        level=args.level,
        seed=args.seed,
        real_time=args.real_time,
        target=args.target,
        strict=args.strict,
        allow_skips=args.allow_skips,
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
