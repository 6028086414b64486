"""Compatibility tests against the real vision-agents 0.6.9, run in their own virtualenv (see `.ci/run`).

vision-agents pulls in a media stack (aiortc, av, onnxruntime, numpy, ...), so it is kept out of the project's
environment: the main run does not collect this directory (``norecursedirs`` in pyproject.toml); run it with
``pytest tests/compat`` in an environment where ``pip install vision-agents==0.6.9 -e '.[testing]'`` was done.

Without vision-agents every module here reports one test that skips with the reason, except under ``CI=true``, where
that test fails: CI must prove compatibility, and a failed install must not pass as a skip.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

VISION_AGENTS_VERSION = "0.6.9"
_NEEDED = ("vision_agents.core.agents.session_registry", "vision_agents.core.agents.agent_launcher")


def _why_unavailable() -> str | None:
    try:
        for module in _NEEDED:
            importlib.import_module(module)
        from importlib.metadata import version

        found = version("vision-agents")
    except ImportError as exc:  # ModuleNotFoundError, or a broken dependency of vision-agents
        return f"vision-agents {VISION_AGENTS_VERSION} is not importable here ({exc})"
    if found != VISION_AGENTS_VERSION:
        return f"these tests pin vision-agents {VISION_AGENTS_VERSION}, found {found}"
    return None


UNAVAILABLE = _why_unavailable()
HINT = (
    "install it in a separate virtualenv: python -m venv .venv-va && "
    f".venv-va/bin/pip install vision-agents=={VISION_AGENTS_VERSION} -e '.[testing]' && "
    ".venv-va/bin/pytest tests/compat"
)


class _VisionAgentsMissing(pytest.Item):
    def runtest(self) -> None:
        message = f"{UNAVAILABLE}; {HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


class _Unavailable(pytest.Module):
    """A test module that cannot be imported here: one item in its place that skips (or fails in CI) and says why."""

    def collect(self) -> Iterator[pytest.Item]:
        yield _VisionAgentsMissing.from_parent(self, name="vision_agents_installed")


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    if UNAVAILABLE is None or not module_path.name.startswith("test_"):
        return None
    return _Unavailable.from_parent(parent, path=module_path)
