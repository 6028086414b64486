"""``sessionkv sim``: exit codes, the --json shape, the --history JSON Lines, determinism checks, explore."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessionkv.cli import main
from sessionkv.sim.explore import explore

SPEC_KEYS = {
    "scenario",
    "backend",
    "policy",
    "seed",
    "parameters",
    "trace_hash",
    "verdict",
    "invariants",
    "violations",
    "coverage",
    "stats",
    "timeline",
    "heartbeat_gaps_s",
    "notes",
    "reproduce",
}
EVENT_KEYS = ["index", "time", "node", "process", "type", "f", "key", "value", "error"]


def test_list_names_every_builtin_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("steady", "node-crash", "partition-long", "per-call-limit-race", "clock-skew"):
        assert name in out


def test_run_ok_exits_0_and_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "run", "steady", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "verdict: ok" in out
    assert "reproduce: sessionkv sim run steady --backend memory --policy hardened --seed 3" in out
    assert "trace hash: " in out


def test_run_violated_exits_1_with_the_first_offending_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_history = tmp_path / "r.json", tmp_path / "h.jsonl"
    code = main(
        [
            "sim",
            "run",
            "per-call-limit-race",
            "--policy",
            "faithful",
            "--json",
            str(out_json),
            "--history",
            str(out_history),
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "FAIL per-call-limit" in out
    assert "session_start" in out
    document = json.loads(out_json.read_text())
    assert set(document) >= SPEC_KEYS
    assert document["verdict"] == "violated"
    assert document["policy"] == "faithful"
    assert document["seed"] == 1
    assert document["backend"] == "memory"
    violation = document["violations"][0]
    assert violation["invariant"] == "per-call-limit"
    assert violation["expected"] is False
    assert violation["attribution"] == "node"
    assert [list(event) for event in violation["first_events"]] == [EVENT_KEYS] * len(violation["first_events"])
    assert {"operations", "simulated_s", "wall_s", "lost_acknowledged_writes"} <= set(document["stats"])
    assert document["timeline"]["nodes"] == ["n1", "n2", "n3"]
    assert set(document["timeline"]["samples"][0]) == {"t", "node", "running", "visible"}
    assert document["timeline"]["marks"][0]["invariant"] == "per-call-limit"
    assert all(gap > 0 for gap in document["heartbeat_gaps_s"])
    lines = out_history.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [event["index"] for event in events] == list(range(len(events)))
    assert all(list(event) == EVENT_KEYS for event in events)
    assert {event["type"] for event in events} <= {"invoke", "ok", "fail", "info"}
    times = [event["time"] for event in events]
    assert times == sorted(times)
    first = violation["first_events"][0]
    assert events[first["index"]] == first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sim", "run", "no-such-scenario"], "no scenario 'no-such-scenario'"),
        (["sim", "run", "steady", "--nodes", "0"], "--nodes: must be >= 1"),
        (["sim", "run", "steady", "--backend", "etcd"], "invalid choice: 'etcd'"),
        (["sim", "run", "steady", "--backend", "redis", "--check-determinism"], "needs an in-process backend"),
        (["sim", "explore", "steady"], "--seeds"),
        (["sim", "explore", "steady", "--seeds", "2", "--backend", "redis"], "needs an in-process backend"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_bad_schedule_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps([{"at": 1.0, "verb": "explode"}]))
    assert main(["sim", "run", "steady", "--schedule", str(path)]) == 2
    assert "unknown verb 'explode'" in capsys.readouterr().err


def test_report_writes_the_page_or_says_it_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "run", "steady", "--duration", "60", "--report", str(tmp_path / "report")])
    if importlib.util.find_spec("sessionkv.sim.report") is None:
        assert code == 2
        assert "--report needs sessionkv.sim.report" in capsys.readouterr().err
        assert not (tmp_path / "report").exists()
    else:
        assert code == 0
        assert (tmp_path / "report" / "index.html").is_file()


def test_check_determinism_reports_identical_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "run", "close-storm", "--check-determinism", "--duration", "100"]) == 0
    assert "determinism: two runs recorded the same" in capsys.readouterr().out


def test_the_trace_hash_does_not_depend_on_the_process(tmp_path: Path) -> None:
    hashes = set()
    for hash_seed in ("1", "2"):
        path = tmp_path / f"r{hash_seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sessionkv.cli",
                "sim",
                "run",
                "close-storm",
                "--duration",
                "100",
                "--json",
                str(path),
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        hashes.add(json.loads(path.read_text())["trace_hash"])
    assert len(hashes) == 1


def test_explore_finds_and_shrinks_the_faithful_per_call_limit_overshoot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # seeds 6 and 7 do not race (see test_sim_scenarios); 8 does
    found = explore("per-call-limit-race", [6, 7, 8, 9], policy="faithful", jobs=1)
    assert found is not None
    assert found.seed == 8
    assert found.tried == 3
    assert found.violated == ["per-call-limit"]
    assert len(found.schedule) == 2 < len(found.original)
    assert {action.verb for action in found.schedule} == {"open"}
    assert len({action.arg("call") for action in found.schedule}) == 1  # the two opens of the racing call
    assert len({action.node for action in found.schedule}) == 2
    # the CLI prints the schedule and a command that reproduces it exactly
    schedule = tmp_path / "schedule.json"
    argv = ["sim", "explore", "per-call-limit-race", "--policy", "faithful", "--seeds", "4", "--first-seed", "6"]
    assert main([*argv, "--jobs", "1", "--schedule-out", str(schedule)]) == 1
    out = capsys.readouterr().out
    assert "seed 8 violates per-call-limit" in out
    command = next(line for line in out.splitlines() if line.startswith("reproduce: ")).removeprefix("reproduce: ")
    assert command.endswith(f"--seed 8 --schedule {schedule}")
    assert main(command.split()[1:]) == 1
    assert "FAIL per-call-limit" in capsys.readouterr().out


def test_explore_gives_the_same_answer_whatever_the_number_of_workers() -> None:
    one = explore("per-call-limit-race", [6, 7, 8, 9], policy="faithful", jobs=1)
    two = explore("per-call-limit-race", [6, 7, 8, 9], policy="faithful", jobs=2)
    assert one is not None
    assert two is not None
    assert (one.seed, one.tried, one.schedule) == (two.seed, two.tried, two.schedule)


def test_explore_without_violation_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "explore", "per-call-limit-race", "--seeds", "3", "--jobs", "1"]) == 0
    assert "no violation" in capsys.readouterr().out


def test_the_whole_result_does_not_depend_on_the_process(tmp_path: Path) -> None:
    documents = []
    for hash_seed in ("3", "4"):
        path = tmp_path / f"r{hash_seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        argv = ["sim", "run", "redis-restart-empty", "--policy", "faithful", "--json", str(path)]
        subprocess.run([sys.executable, "-m", "sessionkv.cli", *argv], env=env, capture_output=True, check=False)
        document = json.loads(path.read_text())
        for volatile in ("wall_s", "analysis_s", "speed_x"):
            document["stats"].pop(volatile)
        documents.append(document)
    assert documents[0] == documents[1]
    assert documents[0]["violations"]
