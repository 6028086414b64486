"""Every ```python block of README.md and docs/ (any page, found by glob) runs as written, or is marked a fragment.

The convention (stated for writers in docs/index.md, "Writing these docs"):

* A block is a **script** by default: it runs in a fresh interpreter (``redis://localhost:6379/0`` is replaced by this
  session's redis-server) and must exit 0. Its printed output is compared where the page shows it: a ```text block
  right after it (only blank lines between) must equal the whole output; a ``# -> text`` comment at the end of a line
  must appear as a line of the output, in the order of those comments.
* A block defining tests (a line starting ``def test_``, ``async def test_`` or ``class Test``) is a **pytest file**:
  it runs with pytest (the sessionkv plugin, against this session's redis-server) in an empty directory, and every
  test must pass, none skipped.
* A block whose nearest non-blank line before the fence is ``<!-- fragment -->`` is a **fragment** (an excerpt, or
  code needing names of the reader's own project): not run. Anything else that does not run fails here.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sessionkv.testing import RedisServer

ROOT = Path(__file__).resolve().parent.parent
FRAGMENT_MARK = "<!-- fragment -->"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*$")
_EXPECTED_COMMENT = re.compile(r"#\s*->\s?(?P<text>.*)$")


@dataclasses.dataclass(frozen=True)
class Block:
    name: str  # page#line of the opening fence
    code: str
    fragment: bool
    output: str | None  # the ```text block right after it, if any

    @property
    def kind(self) -> str:
        if self.fragment:
            return "fragment"
        return "pytest" if re.search(r"^(async def test_|def test_|class Test)", self.code, re.M) else "script"

    def expected_lines(self) -> list[str]:
        found = (_EXPECTED_COMMENT.search(line) for line in self.code.splitlines())
        return [match["text"].rstrip() for match in found if match]


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page, in order, each python block with its fragment mark and its output block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fences: list[tuple[int, int, str, str]] = []  # (open line, close line, lang, body)
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = opening["indent"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path.name}:{index + 1}: code fence never closed")
        body = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end]) + "\n"
        fences.append((index, end, opening["lang"], body))
        index = end + 1
    blocks = []
    for position, (start, end, lang, body) in enumerate(fences):
        if lang != "python":
            continue
        before = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        output = None
        if position + 1 < len(fences):
            next_start, _, next_lang, next_body = fences[position + 1]
            if next_lang == "text" and all(not line.strip() for line in lines[end + 1 : next_start]):
                output = next_body
        name = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{start + 1}"
        blocks.append(Block(name, body, before == FRAGMENT_MARK, output))
    return blocks


BLOCKS = [block for page in pages() for block in parse_blocks(page)]
RUNNABLE = [block for block in BLOCKS if block.kind != "fragment"]


def _fill_in_the_server(code: str, server: RedisServer) -> str:
    return code.replace("redis://localhost:6379/0", server.url)


def test_the_pages_have_examples_that_run() -> None:
    assert sum(block.kind == "script" for block in BLOCKS) >= 8, [block.name for block in BLOCKS]
    assert sum(block.kind == "pytest" for block in BLOCKS) >= 2, [block.name for block in BLOCKS]


def test_the_parser_sees_marks_outputs_and_indented_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Intro\n\n<!-- fragment -->\n\n```python\nasync with x:\n    pass\n```\n\n```python\nprint(1)  # -> 1\n```\n\n"
        "```text\n1\n```\n\n* item\n\n  ```python\n  print(2)\n  ```\n\n```python\nclass TestX:\n    pass\n```\n"
    )
    blocks = parse_blocks(page)
    assert [(block.kind, block.output) for block in blocks] == [
        ("fragment", None),
        ("script", "1\n"),
        ("script", None),
        ("pytest", None),
    ]
    assert blocks[1].expected_lines() == ["1"]
    assert blocks[2].code == "print(2)\n"


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.name for block in RUNNABLE])
def test_example_runs(block: Block, redis_server: RedisServer, tmp_path: Path) -> None:
    code = _fill_in_the_server(block.code, redis_server)
    if block.kind == "pytest":
        (tmp_path / "test_doc_example.py").write_text(code)
        command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
        command += [f"--sessionkv-redis-url={redis_server.url}", "test_doc_example.py"]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
        report = f"{block.name} as a pytest file:\n{result.stdout}\n{result.stderr}"
        assert result.returncode == 0, report
        assert re.search(r"\d+ passed", result.stdout), report
        assert "skipped" not in result.stdout, report
        return
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    report = f"{block.name} failed or printed something else:\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, report
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    if block.output is not None:
        assert printed == [line.rstrip() for line in block.output.splitlines()], report
    expected = iter(printed)
    missing = [line for line in block.expected_lines() if not any(seen == line for seen in expected)]
    assert not missing, f"{report}\nexpected, in this order, the lines {block.expected_lines()}; missing {missing}"


def test_every_block_that_is_not_a_fragment_at_least_compiles() -> None:
    broken = []
    for block in RUNNABLE:
        try:
            compile(block.code, block.name, "exec")
        except SyntaxError as error:
            broken.append(f"{block.name}: {error.msg} (line {error.lineno}); fix it or mark it {FRAGMENT_MARK!r}")
    assert not broken, "\n".join(broken)
