"""The certification runner, report and CLI, and the gallery of broken stores it must reject."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import textwrap
from pathlib import Path

import pytest
from certify_gallery import GALLERY

from sessionkv import InMemorySessionKVStore
from sessionkv.testing.certify import backends, certify, prepare_backend, verdict_mismatches
from sessionkv.testing.certify.catalogue import MODEL_ID
from sessionkv.testing.certify.cli import main
from sessionkv.testing.certify.report import render_text
from sessionkv.testing.certify.runner import Report


async def _certify(factory: object, **kwargs: object) -> Report:
    backend = await prepare_backend(factory)  # type: ignore[arg-type]
    return await certify(backend, **kwargs)  # type: ignore[arg-type]


def _run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


# -- the gallery: every broken store is rejected, by the guarantee it breaks ------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(GALLERY))
async def test_gallery_store_fails_exactly_the_guarantee_it_breaks(name: str) -> None:
    cls, guarantee = GALLERY[name]
    report = await _certify(cls, only=lambda check: check.guarantee != MODEL_ID)
    assert report.status_of(guarantee) == "FAIL", f"{name} should fail {guarantee}"
    assert report.exit_code == 1
    failing = [c for c in report.failed if c.guarantee == guarantee]
    assert all(c.reproduction for c in failing), "every failure comes with the calls that reproduce it"
    assert report.status_of("G01") == "PASS", "the rest of the store still works"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "culprit"),
    [
        ("OnlyIfExistsResurrects", "only_if_exists=True"),
        ("GlobPrefix", "keys("),
        ("OffByOneBoundary", "advance("),
        ("MgetDropsRepeatedKeys", "mget("),
        ("AcceptsNan", "nan"),
    ],
)
async def test_the_model_based_test_alone_catches_and_shrinks(name: str, culprit: str) -> None:
    report = await _certify(GALLERY[name][0], only=lambda check: check.guarantee == MODEL_ID, seed=0)
    assert report.status_of(MODEL_ID) == "FAIL"
    [failure] = report.failed
    assert failure.shrunk
    assert 1 <= len(failure.reproduction) <= 5, failure.reproduction
    assert culprit in "\n".join(failure.reproduction)
    assert "--seed 0" in failure.message


@pytest.mark.asyncio
async def test_same_seed_same_minimal_program() -> None:
    first = await _certify(GALLERY["OffByOneBoundary"][0], only=lambda c: c.guarantee == MODEL_ID, seed=7)
    second = await _certify(GALLERY["OffByOneBoundary"][0], only=lambda c: c.guarantee == MODEL_ID, seed=7)
    assert first.failed[0].reproduction == second.failed[0].reproduction
    assert first.failed[0].message == second.failed[0].message


@pytest.mark.asyncio
async def test_a_recorded_failure_is_shrunk_to_the_calls_that_matter() -> None:
    report = await _certify(GALLERY["ExpireResurrects"][0], only=lambda c: c.name.startswith("G09_expire_never"))
    [failure] = report.failed
    assert failure.shrunk
    assert failure.reproduction == [
        "1. set('k', b'v', 2.5)  ->  None",
        "2. advance(2.5)",
        "3. expire('k', ttl=3600.0)  ->  None",
        "4. get('k')  ->  b'v'   <-- expected None, got b'v'",
    ]


@pytest.mark.asyncio
async def test_our_fakeredis_store_is_certified_on_virtual_time_within_its_granularity() -> None:
    report = await _certify(backends.fakeredis, only=lambda c: c.guarantee in ("G05", "G06", "G09"))
    assert report.exit_code == 0, [c.message for c in report.failed]
    assert report.mode.virtual
    assert report.mode.wall_clock
    assert report.mode.tolerance_ns == 1_001_000  # 1 ms granularity + the patched wall clock's 1 µs resolution
    assert "the wall clock follows it" in report.mode.describe()


@pytest.mark.asyncio
async def test_our_fakeredis_store_passes_in_real_time_with_the_declared_tolerance() -> None:
    report = await _certify(backends.fakeredis, real_time=True, only=lambda c: c.guarantee in ("G05", "G06"))
    assert not report.failed, [c.message for c in report.failed]
    assert all(c.status == "PASS" for c in report.checks if not c.incomplete)  # a loaded machine: INCONCLUSIVE
    assert not report.mode.virtual
    assert report.mode.tolerance_ns == 1_000_000
    assert "real time" in report.mode.describe()


@pytest.mark.asyncio
async def test_a_factory_with_a_clock_can_still_be_run_in_real_time() -> None:
    report = await _certify(InMemorySessionKVStore, real_time=True, only=lambda c: c.name.startswith("G06_exact"))
    assert report.status_of("G06") in ("PASS", "INCONCLUSIVE")  # never FAIL, however loaded the machine
    assert not report.mode.virtual
    assert report.mode.tolerance_ns == 1  # the in-memory store declares nanosecond granularity


@pytest.mark.asyncio
async def test_an_async_factory_is_awaited() -> None:
    async def factory() -> InMemorySessionKVStore:
        return InMemorySessionKVStore()

    report = await _certify(factory, only=lambda c: c.guarantee == "G02")
    assert report.exit_code == 0
    assert not report.mode.virtual  # no clock keyword: real time


# -- the CLI ----------------------------------------------------------------------------------------------------------


def test_cli_certifies_the_memory_store_and_writes_json(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    status, out, _ = _run_cli("sessionkv.testing.certify.backends:memory", "--json", str(path), "--seed", "3")
    assert status == 0, out
    assert "virtual clock" in out
    assert "51 checks: 51 passed; in " in out
    data = json.loads(path.read_text())
    assert data["passed"] is True
    assert data["exit_status"] == 0
    assert data["seed"] == 3
    rows = {row["id"]: row for row in data["guarantees"]}
    assert set(rows) == {f"G{i:02d}" for i in range(1, 17)} | {MODEL_ID}
    assert rows["G15"]["status"] == "SKIPPED"
    assert "in-process store" in rows["G15"]["reason"]
    assert all(rows[g]["status"] == "PASS" for g in rows if g != "G15")
    assert data["verdicts"] == {g: row["status"] for g, row in rows.items()}
    assert verdict_mismatches(data, {"G15": "SKIPPED", "G06": "PASS"}) == {}
    assert verdict_mismatches(data, {"G06": "FAIL", "G99": "PASS"}) == {
        "G06": ("FAIL", "PASS"),
        "G99": ("PASS", "MISSING"),
    }


def test_cli_reports_a_failure_with_its_reproduction_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    status, out, _ = _run_cli("certify_gallery:GlobPrefix", "--json", str(path))
    assert status == 1
    assert "FAIL G10_keys_prefix_is_literal_not_a_glob" in out
    assert "fix: match the prefix literally (`key.startswith(prefix)`" in out
    assert "smallest reproducing sequence" in out
    row = next(r for r in json.loads(path.read_text())["guarantees"] if r["id"] == "G10")
    assert row["status"] == "FAIL"
    assert any(check["reproduction"] for check in row["checks"] if check["status"] == "FAIL")


def test_cli_seed_level_checks_only_what_the_seed_states() -> None:
    status, out, _ = _run_cli("certify_gallery:AcceptsNan", "--level", "seed", "--json", "-")
    assert status == 0  # accepting nan breaks only the full contract (G14)
    data = json.loads(out)
    rows = {row["id"]: row for row in data["guarantees"]}
    for guarantee in ("G03", "G12", "G13", "G14", "G15", "G16"):
        assert rows[guarantee]["status"] == "SKIPPED"
        assert "not stated by the seed reference" in rows[guarantee]["reason"]
    assert rows["G05"]["status"] == "PASS"
    assert _run_cli("certify_gallery:AcceptsNan", "--level", "full")[0] == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon_here", "must look like package.module:callable"),
        ("no_such_module_xyz:factory", "cannot import module 'no_such_module_xyz'"),
        ("sessionkv.memory:NoSuchThing", "has no attribute 'NoSuchThing'"),
        ("sessionkv.store:MAX_TTL", "not callable"),
        ("certify_gallery:GALLERY.get", "raised TypeError"),
        ("builtins:object", "lacks the store API"),
    ],
)
def test_cli_usage_errors_exit_2_and_say_what_to_fix(target: str, message: str) -> None:
    status, out, err = _run_cli(target)
    assert status == 2
    assert message in err
    assert out == ""


def test_cli_bad_option_exits_2() -> None:
    assert _run_cli("sessionkv.memory:InMemorySessionKVStore", "--level", "medium")[0] == 2


# -- the contract classes ---------------------------------------------------------------------------------------------


def test_a_downstream_subclass_runs_the_same_checks_with_declared_skips(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from sessionkv import InMemorySessionKVStore
            from sessionkv.testing.certify.suite import SessionKVStoreContract

            class Resurrecting(InMemorySessionKVStore):
                async def expire(self, *keys, ttl):
                    for key in keys:
                        if key in self._entries:
                            self._put(key, self._entries[key][0], self._now_ns() + round(ttl * 1e9))

            class TestResurrecting(SessionKVStoreContract):
                unsupported = {"G15": "in-process", "G13": "we only use ASCII keys"}

                @pytest.fixture
                def store_factory(self):
                    return lambda *, clock=None: Resurrecting(clock=clock)
            """
        )
    )
    result = pytester.runpytest("-q", "-rs", "-k", "G09 or G13 or G15", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1, skipped=2)
    result.stdout.fnmatch_lines(["*test_G09_expire_never_resurrects_an_expired_key*", "*we only use ASCII keys*"])


# -- correctness decides, strictness warns -----------------------------------------------------------------------------


def test_a_lenient_but_correct_store_certifies_with_warnings_and_fails_under_strict(tmp_path: Path) -> None:
    path = tmp_path / "lenient.json"
    status, out, _ = _run_cli("certify_gallery:LenientButCorrect", "--json", str(path))
    assert status == 0, out
    data = json.loads(path.read_text())
    assert data["verdicts"]["G14"] == "WARN"
    assert data["verdicts"][MODEL_ID] == "WARN", "its model-based divergences need a strictness input"
    assert {g for g, v in data["verdicts"].items() if v not in ("PASS", "SKIPPED")} == {"G14", MODEL_ID}
    assert data["counts"]["FAIL"] == 0
    assert data["warnings"] >= 10
    warned = {c["name"]: c for row in data["guarantees"] for c in row["checks"] if c["status"] == "WARN"}
    assert any("ttl=2000000000.0: accepted" in w for w in warned["G14_ttl_above_max_or_bool_is_rejected"]["warnings"])
    assert any("Fraction" in w for w in warned["G14_valid_ttl_kinds_are_accepted"]["warnings"])
    assert any("raises ValueError" in w for w in warned["G14_malformed_mset_items_are_a_type_error"]["warnings"])
    assert "check_items" in warned["G14_malformed_mset_items_are_a_type_error"]["fix"]
    assert "passed with" in out
    assert "strictness warnings" in out
    assert "exit status 0" in out

    status, out, _ = _run_cli("certify_gallery:LenientButCorrect", "--strict")
    assert status == 1
    assert "FAIL G14_unencodable_keys_are_a_value_error" in out
    assert "failed under --strict" in out


def test_deleting_the_characters_of_a_bare_string_is_a_correctness_failure() -> None:
    status, out, _ = _run_cli("certify_gallery:DeleteIteratesCharacters", "--json", "-")
    assert status == 1
    checks = {c["name"]: c for row in json.loads(out)["guarantees"] for c in row["checks"]}
    failure = checks["G14_a_bare_string_is_not_a_list_of_keys"]
    assert failure["status"] == "FAIL"
    assert "deleted the keys ['a', 'b', 'c']" in failure["message"]


def test_a_contract_class_warns_on_strictness_and_fails_when_strict(pytester: pytest.Pytester) -> None:
    # the project's own filterwarnings=error would turn the warnings into failures: show them instead
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = default\n")
    pytester.syspathinsert(Path(__file__).parent)
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from certify_gallery import LenientButCorrect
            from sessionkv.testing.certify.suite import SessionKVStoreContract

            class TestLenient(SessionKVStoreContract):
                @pytest.fixture
                def store_factory(self):
                    return LenientButCorrect

            class TestLenientStrict(TestLenient):
                strict = True
            """
        )
    )
    result = pytester.runpytest("-q", "-k", "unencodable or round_trip", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*StrictnessWarning: G14_unencodable_keys_are_a_value_error: set(lone surrogate): accepted*",
            "*TestLenientStrict::test_G14_unencodable_keys_are_a_value_error*",
        ]
    )


@pytest.mark.asyncio
async def test_the_model_based_test_without_hypothesis_makes_the_run_incomplete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # import hypothesis -> ImportError
    backend = await prepare_backend(backends.memory)
    only_model = {"only": lambda c: c.guarantee in (MODEL_ID, "G02")}
    report = await certify(backend, **only_model)  # type: ignore[arg-type]
    assert report.status_of(MODEL_ID) == "SKIPPED"
    assert report.exit_code == 3
    summary = render_text(report).splitlines()
    line = next(x for x in summary if x.startswith("3 checks") or " checks: " in x)
    assert "MODEL_random_sequences_agree_with_the_reference_model NOT RUN: hypothesis is not installed" in line
    assert "exit status 3 (incomplete; --allow-skips accepts it)" in line
    allowed = await certify(backend, allow_skips=True, **only_model)  # type: ignore[arg-type]
    assert allowed.exit_code == 0


# -- real time: a check that ran out of time is retried, then INCONCLUSIVE, never FAIL -------------------------------


class SlowFirstExpire(InMemorySessionKVStore):
    """Correct, but its first expire() of each store takes longer than the key it refreshes has left to live."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = True

    async def expire(self, *keys: str, ttl: float) -> None:
        if self.slow and keys:
            self.slow = False
            entry = self._entries.get(keys[0])
            if entry is not None:
                await asyncio.sleep(max(0, entry[1] - self._now_ns()) / 1e9 + 0.005)  # a loaded machine's pause
        await super().expire(*keys, ttl=ttl)


class AlwaysTooSlowExpire(InMemorySessionKVStore):
    """Correct, but every expire() takes longer than the key it refreshes has left to live."""

    async def expire(self, *keys: str, ttl: float) -> None:
        entry = self._entries.get(keys[0]) if keys else None
        if entry is not None:
            await asyncio.sleep(max(0, entry[1] - self._now_ns()) / 1e9 + 0.005)
        await super().expire(*keys, ttl=ttl)


@pytest.mark.asyncio
async def test_a_real_time_check_whose_setup_overran_its_ttl_is_retried_with_a_longer_one() -> None:
    calls = 0

    def factory() -> SlowFirstExpire:
        nonlocal calls
        calls += 1
        store = SlowFirstExpire()
        store.slow = calls <= 2  # prepare_backend's probe, then the first attempt; the retry runs at normal speed
        return store

    report = await _certify(
        factory, only=lambda c: c.name == "G09_expire_extends_a_live_key_without_changing_its_value"
    )
    [result] = report.checks
    assert result.status == "PASS", result.message
    assert result.attempts, "the first attempt overran its TTL: it was not judged"
    assert "TTL 200 ms: its calls took" in result.attempts[0]


@pytest.mark.asyncio
async def test_a_real_time_check_that_overruns_every_ttl_is_inconclusive_not_failed() -> None:
    report = await _certify(
        AlwaysTooSlowExpire,
        real_time=True,
        only=lambda c: c.name == "G09_expire_extends_a_live_key_without_changing_its_value",
    )
    [result] = report.checks
    assert result.status == "INCONCLUSIVE", result.message
    assert [a.split(":")[0] for a in result.attempts] == ["TTL 200 ms", "TTL 800 ms", "TTL 3200 ms"]
    assert report.exit_code == 3
    assert "not a failure" in render_text(report)


@pytest.mark.asyncio
async def test_a_real_failure_in_real_time_is_still_a_failure() -> None:
    report = await _certify(
        GALLERY["ExpireResurrects"][0],
        real_time=True,
        only=lambda c: c.name == "G09_expire_never_resurrects_an_expired_key",
    )
    [result] = report.checks
    assert result.status == "FAIL"
    assert result.attempts == [], "its calls kept to the TTL: nothing to retry"
    assert report.exit_code == 1


# -- readable failures ---------------------------------------------------------------------------------------------


class RefreshesOnlyTheFirstHundred(InMemorySessionKVStore):
    """expire() refreshes at most 100 keys per call (a broken batch)."""

    async def expire(self, *keys: str, ttl: float) -> None:
        await super().expire(*keys[:100], ttl=ttl)


@pytest.mark.asyncio
async def test_a_failure_over_many_keys_is_elided_with_counts() -> None:
    report = await _certify(RefreshesOnlyTheFirstHundred, only=lambda c: c.name == "G09_expire_many_keys_at_once")
    [failure] = report.failed
    assert "900 missing" in failure.message
    assert "... 900 items" in failure.message
    text = render_text(report)
    assert "expire('e/0', 'e/1', 'e/2', ... 1000 items, ttl=3600.0)" in text
    assert len(text) < 4_000, "one failure must stay readable"
