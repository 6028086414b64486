"""The ``sessionkv`` command: one entry point, one subcommand per capability.

Each subcommand lives with its capability (``sessionkv.testing.certify.cli``, ``sessionkv.testing.faults.cli``) and
is imported only when used, so ``sessionkv --help`` works on a core install and a subcommand whose extra is missing
says which extra to install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "certify": ("sessionkv.testing.certify.cli", "check a store backend against the whole sessionkv contract"),
    "proxy": ("sessionkv.testing.faults.cli", "run a fault-injecting Redis proxy for manual chaos testing"),
    "sim": ("sessionkv.sim.cli", "simulate session nodes through crashes, partitions and store failures"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sessionkv SUBCOMMAND ...`` and return its exit status (2 for usage errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="sessionkv",
        description="TTL key-value stores for a multi-node session registry, and the toolkit to test them.",
        epilog="Run 'sessionkv SUBCOMMAND --help' for a subcommand's options.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "subcommand",
        nargs="?",
        choices=sorted(SUBCOMMANDS),
        metavar="SUBCOMMAND",
        help="; ".join(f"{name}: {text}" for name, (_, text) in SUBCOMMANDS.items()),
    )
    head, rest = (args[:1], args[1:]) if args and not args[0].startswith("-") else (args, [])
    options = parser.parse_args(head)
    if options.version:
        from sessionkv import __version__

        print(f"sessionkv {__version__}")
        return 0
    if options.subcommand is None:
        parser.print_help()
        return 2
    module_name, _ = SUBCOMMANDS[options.subcommand]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "sessionkv":
            raise  # our own module missing is a packaging bug, not a missing extra
        print(
            f"sessionkv {options.subcommand}: needs {exc.name!r}, which is not installed; "
            "install the testing extra: pip install 'sessionkv[testing]'",
            file=sys.stderr,
        )
        return 2
    run: Callable[[list[str]], int] = module.main
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
