"""Tests of ``sessionkv.sim.report.write_report`` on synthetic run results (see ``report_results.py``)."""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_results import clean_result, minimal_result, pixels_near, vacuous_result, violated_result

from sessionkv.sim.report import HEARTBEAT_PICTURE, INDEX_PAGE, TIMELINE_PICTURE, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RED = (0xD6, 0x28, 0x28)
"""The colour of violation marks and of the TTL line."""

RESULTS: dict[str, Callable[[], dict[str, Any]]] = {
    "clean": clean_result,
    "violated": violated_result,
    "vacuous": vacuous_result,
    "minimal": minimal_result,
}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking that the file is a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def red_pixels(path: Path) -> int:
    """How many pixels are (almost exactly) the red of marks and the TTL line."""
    return pixels_near(path, RED, tolerance=4)


@pytest.mark.parametrize("name", RESULTS)
def test_writes_two_real_pictures_and_a_page_naming_the_verdict(tmp_path: Path, name: str) -> None:
    result = RESULTS[name]()
    index = write_report(result, tmp_path / "report")
    assert index == tmp_path / "report" / INDEX_PAGE
    for picture in (TIMELINE_PICTURE, HEARTBEAT_PICTURE):
        width, height = png_size(tmp_path / "report" / picture)
        assert 800 <= width <= 2000, (picture, width)
        assert 300 <= height <= 3000, (picture, height)
    page = index.read_text(encoding="utf-8")
    assert re.search(rf'id="verdict"[^>]*>verdict: <strong>{result["verdict"].upper()}</strong>', page)
    assert f'src="{TIMELINE_PICTURE}"' in page
    assert f'src="{HEARTBEAT_PICTURE}"' in page


@pytest.mark.parametrize("name", ["clean", "violated", "vacuous"])
def test_page_lists_every_invariant_with_its_status_and_the_run_identity(tmp_path: Path, name: str) -> None:
    result = RESULTS[name]()
    page = write_report(result, tmp_path).read_text(encoding="utf-8")
    for invariant in result["invariants"]:
        assert re.search(
            rf"<td>{re.escape(invariant['name'])}</td><td><span class=\"badge {invariant['status']}\">", page
        ), invariant
    assert f"<code>{result['trace_hash']}</code>" in page
    assert result["reproduce"] in page
    assert f"<td>seed</td><td>{result['seed']}</td>" in page


def test_violations_show_their_first_events_escaped_and_unknown_kinds_as_they_are(tmp_path: Path) -> None:
    page = write_report(violated_result(), tmp_path).read_text(encoding="utf-8")
    assert "<h2>Violations (2)</h2>" in page
    assert 'class="violation unexpected"' in page
    assert 'class="violation expected"' in page
    assert "ran on n2 but was invisible from 170.0 s to 600.0 s" in page
    assert "<td>store_wipe</td>" in page
    assert "<td>teleport</td>" in page
    assert "<script>alert(1)</script>" not in page
    assert "sessions/c1/&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<td>not an event at all</td>" in page
    assert "…" in page  # the 100-element value is cut
    assert "faithful policy: nothing re-registers" in page
    assert "2 unusable gap values were left out" in page


def test_vacuous_run_shows_the_unmet_coverage_guard(tmp_path: Path) -> None:
    page = write_report(vacuous_result(), tmp_path).read_text(encoding="utf-8")
    assert '<td>a node crashed</td><td><span class="badge unmet">unmet</span></td>' in page
    assert "did not cover what the scenario needs" in page


def test_marks_and_the_ttl_line_are_drawn_in_red_and_only_when_present(tmp_path: Path) -> None:
    write_report(violated_result(), tmp_path / "violated")
    write_report(clean_result(), tmp_path / "clean")
    write_report(minimal_result(), tmp_path / "minimal")
    assert red_pixels(tmp_path / "violated" / TIMELINE_PICTURE) > 0
    assert red_pixels(tmp_path / "clean" / TIMELINE_PICTURE) == 0
    assert red_pixels(tmp_path / "clean" / HEARTBEAT_PICTURE) > 0  # the TTL line
    assert red_pixels(tmp_path / "minimal" / HEARTBEAT_PICTURE) == 0  # no TTL in the result: no line


def test_many_nodes_share_one_panel_of_fleet_totals(tmp_path: Path) -> None:
    result = clean_result()
    nodes = [f"n{i}" for i in range(1, 41)]
    result["timeline"] = {
        "nodes": nodes,
        "samples": [{"t": float(t), "node": n, "running": 5, "visible": 5} for t in range(0, 600, 10) for n in nodes],
    }
    write_report(result, tmp_path / "many")
    write_report(clean_result(), tmp_path / "three")
    assert png_size(tmp_path / "many" / TIMELINE_PICTURE)[1] < png_size(tmp_path / "three" / TIMELINE_PICTURE)[1]


def test_same_result_gives_the_same_bytes(tmp_path: Path) -> None:
    for run in ("a", "b"):
        write_report(violated_result(), tmp_path / run)
    for name in (TIMELINE_PICTURE, HEARTBEAT_PICTURE, INDEX_PAGE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize(
    "broken",
    [
        {"verdict": "ok", "timeline": "not a mapping", "invariants": [None, 3], "violations": {"a": 1}},
        {"verdict": None, "timeline": {"samples": [{"t": "x"}, {"node": "n1"}, 5], "faults": [{"end": 3}]}},
        {"parameters": {"ttl_s": float("inf")}, "heartbeat_gaps_s": [-1.0, True], "stats": {"nested": {"a": [1]}}},
        {"parameters": {"duration_s": 10**400}, "timeline": {"nodes": ["n1"], "marks": [{"t": 10**400}]}},
    ],
)
def test_malformed_optional_fields_never_break_the_report(tmp_path: Path, broken: dict[str, Any]) -> None:
    index = write_report(broken, tmp_path)
    png_size(tmp_path / TIMELINE_PICTURE)
    assert "verdict:" in index.read_text(encoding="utf-8")


def test_a_result_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"result must be a mapping \(RunResult.to_json\(\)\), got list"):
        write_report([("verdict", "ok")], tmp_path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_the_error_names_the_extra_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'sessionkv\[sim\]'"):
        write_report(clean_result(), tmp_path / "report")
    assert not (tmp_path / "report").exists()
