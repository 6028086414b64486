"""The documentation's complete examples run as written (against this session's redis-server instead of
localhost:6379). Fragments (code that does not compile on its own, or pytest test files) are left to the pages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sessionkv.testing import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def complete_examples() -> list[tuple[str, str]]:
    examples = []
    for page in PAGES:
        for index, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S)):
            if "import pytest" in code or "def test_" in code:
                continue  # a test file for the reader's project, shown for copying
            try:
                compile(code, str(page), "exec")
            except SyntaxError:
                continue  # a fragment, e.g. an `async with` excerpt
            examples.append((f"{page.relative_to(ROOT)}#{index}", code))
    return examples


EXAMPLES = complete_examples()


def test_there_are_complete_examples_to_run() -> None:
    assert len(EXAMPLES) >= 6, [name for name, _ in EXAMPLES]


@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_runs(name: str, code: str, redis_server: RedisServer) -> None:
    code = code.replace("redis://localhost:6379/0", redis_server.url)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
