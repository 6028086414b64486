"""The model-based test: random sequences of every operation and clock advance, judged step by step by the model.

Programs are drawn by hypothesis as lists of :class:`~sessionkv.testing.certify.model.Step` (the "equivalent" of a
``RuleBasedStateMachine``: a program is plain data, so it can be replayed, printed and run on a fresh event loop per
example). Hypothesis is seeded with the run's ``--seed`` and has no example database, so the same seed draws the same
programs; a failing program is shrunk by hypothesis and reported up to its first divergence, with the seed.

What the model catches that the hand-written checks may not: any disagreement on any answer after any history (values,
``None``, ``keys()`` as a multiset so duplicates count, exception types for invalid input), including histories with
expiry exactly at boundaries, conditional writes and refreshes of expired keys, and groups of 2-3 concurrent calls,
which must be explained by *some* serial order (G16).

Correctness first, strictness second: the search runs once without strictness inputs (a ``bool`` TTL, keys that are
not ``str`` or hold a lone surrogate, a bare ``str`` as a key list, a list given to ``expire``); any divergence there is
a failure. At full level a shorter second search adds them; a divergence it finds is a failure only if it persists with
every strictness input removed from the program, else a strictness warning. Refusing an invalid call with the other of
``TypeError``/``ValueError`` is a warning in both.

Per level: ``full`` uses glob and non-ASCII keys, exact boundary advances, invalid arguments and concurrent groups.
``seed`` keeps to what the seed text states: two key pools, one only ever written with a long TTL (so conditional
writes and ``expire`` never meet an expired key, whose treatment the seed leaves open), valid arguments, no
concurrency. In real time, TTLs are either 200 ms or 1 h and an advance sleeps past the short one; an example in which
the calls between two advances took too long to be judged exactly is discarded, never passed.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

from sessionkv.clock import NS_PER_SECOND
from sessionkv.testing.certify.catalogue import MODEL_ID, CheckSkipped, ContractViolation, Inconclusive, check
from sessionkv.testing.certify.harness import LONG_TTL, REAL_SHORT_TTL, Harness, ShortTtlWindow
from sessionkv.testing.certify.model import Outcome, ReferenceModel, Step, compare, execute, serialisations

__all__ = ["StatefulFailure", "is_strictness_input", "program_strategy", "run_model_based"]

LONG: Final = LONG_TTL

FULL_KEYS: Final = ("a", "a", "a", "ab", "ab", "a*", "a[b]", "é/ключ", "")
"""Repeats make a key more likely: state builds up on few keys, which is where histories get interesting."""
FULL_PREFIXES: Final = ("", "a", "a*", "a[", "[", "*", "?", "b/", "é", "ab", "\\")
SEED_LONG_KEYS: Final = ("s/a", "s/ab", "s/b")
SEED_SHORT_KEYS: Final = ("t/1", "t/2")
SEED_PREFIXES: Final = ("", "s/", "s/a", "t/", "t/1", "x")
VIRTUAL_TTLS: Final = (1e-9, 0.001, 1, 1, 2.5, 2.5, 5, LONG)
VIRTUAL_ADVANCES: Final = (1e-9, 0.001, 0.999, 1, 2.5, 2.499999999, 5)
BAD_TTLS: Final = (0, -1, math.nan, math.inf, "5")
STRICT_BAD_TTLS: Final = (True,)
BAD_KEYS: Final = (5, None, b"a", "\udc80")
"""Keys that are not keys: all strictness inputs (not a str, or a lone surrogate)."""

GUARANTEE_HINT: Final = {
    "set": "G04/G05",
    "mset": "G07",
    "get": "G02/G06",
    "mget": "G08",
    "expire": "G09",
    "keys": "G10",
    "delete": "G11",
    "concurrently": "G16",
}


def is_strictness_input(step: Step) -> bool:
    """Whether ``step`` holds an argument the contract refuses only on a finer G14 point (see the module docstring)."""
    if step.method == "concurrently":
        return any(is_strictness_input(s) for s in step.args)
    ttl = step.kwargs.get("ttl", step.args[2] if step.method == "set" and len(step.args) > 2 else None)
    if isinstance(ttl, bool):
        return True
    keys: list[object] = []
    if step.method in ("set", "get") and step.args:
        keys = [step.args[0]]
    elif step.method in ("mget", "delete") and step.args:
        if isinstance(step.args[0], str):
            return True  # a bare str as a key list
        keys = list(step.args[0]) if isinstance(step.args[0], (list, tuple)) else []
    elif step.method == "mset" and step.args and isinstance(step.args[0], list):
        keys = [item[0] for item in step.args[0] if isinstance(item, tuple) and item]
        if any(isinstance(item, tuple) and len(item) == 3 and isinstance(item[2], bool) for item in step.args[0]):
            return True
    elif step.method == "expire":
        if any(isinstance(k, (list, tuple)) for k in step.args):
            return True
        keys = list(step.args)
    return any(not isinstance(k, str) or _unencodable(k) for k in keys)


def _unencodable(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def program_strategy(level: str, virtual: bool, *, strictness: bool = True, short_ttl: float = REAL_SHORT_TTL) -> Any:
    """The hypothesis strategy of programs for ``level`` and time mode (``Any``: hypothesis is an optional import).

    ``strictness`` false leaves out every strictness input (:func:`is_strictness_input`); ``short_ttl`` is the
    real-time short TTL.
    """
    from hypothesis import strategies as st

    full = level == "full"
    values: Any = st.sampled_from([b"", b"v1", b"v2", b"\x00\xff"])
    if full:
        values = values | st.just(bytearray(b"v3"))
    if virtual:
        ttls: Any = st.sampled_from(VIRTUAL_TTLS)
        advances = st.sampled_from(VIRTUAL_ADVANCES)
    else:
        ttls = st.sampled_from((short_ttl, LONG))
        advances = st.just(short_ttl)
    if full:
        keys: Any = st.sampled_from(FULL_KEYS)
        prefixes = st.sampled_from(FULL_PREFIXES)
        item = st.tuples(keys, values, ttls)
        bad_ttls = st.sampled_from(BAD_TTLS + (STRICT_BAD_TTLS if strictness else ()))
        # invalid calls are their own (rarer) steps, so that most steps build up state worth checking
        invalid_calls = [
            st.builds(
                lambda k, v, t, c: Step("set", (k, v, t), {"only_if_exists": True} if c else {}),
                keys,
                values,
                bad_ttls,
                st.booleans(),
            ),
            st.builds(lambda k, t: Step("set", (k, "text", t)), keys, ttls),
            st.builds(lambda good, k, t: Step("mset", ([good, (k, b"x", t)],)), item, keys, bad_ttls),
            st.builds(lambda ks, t: Step("expire", tuple(ks), {"ttl": t}), st.lists(keys, max_size=2), bad_ttls),
        ]
        if strictness:
            bad_key = st.sampled_from(BAD_KEYS)
            invalid_calls += [
                st.builds(lambda k, v, t: Step("set", (k, v, t)), bad_key, values, ttls),
                st.builds(lambda k: Step("delete", (k,)), st.sampled_from(["ab", "a*"])),
                st.builds(lambda k: Step("mget", (k,)), st.sampled_from(["ab", "a"])),
                st.builds(lambda k: Step("get", (k,)), bad_key),
            ]
        invalid = st.one_of(*invalid_calls)
        steps = [
            st.builds(
                lambda k, v, t, c: Step("set", (k, v, t), {"only_if_exists": True} if c else {}),
                keys,
                values,
                ttls,
                st.booleans(),
            ),
            st.builds(lambda items: Step("mset", (items,)), st.lists(item, max_size=3)),
            st.builds(lambda k: Step("get", (k,)), keys),
            st.builds(lambda ks: Step("mget", (ks,)), st.lists(keys, max_size=4)),
            st.builds(lambda ks, t: Step("expire", tuple(ks), {"ttl": t}), st.lists(keys, max_size=3), ttls),
            st.builds(lambda p: Step("keys", (p,)), prefixes),
            st.builds(lambda ks: Step("delete", (ks,)), st.lists(keys, max_size=3)),
            invalid,
        ]
    else:
        keys = st.sampled_from(SEED_LONG_KEYS + SEED_SHORT_KEYS)
        long_keys = st.sampled_from(SEED_LONG_KEYS)
        prefixes = st.sampled_from(SEED_PREFIXES)

        def item_for(key: str, value: bytes, ttl: float) -> tuple[str, bytes, float]:
            return (key, value, LONG if key in SEED_LONG_KEYS else ttl)

        item = st.builds(item_for, keys, values, ttls)
        steps = [
            st.builds(lambda i: Step("set", i), item),
            st.builds(lambda k, v: Step("set", (k, v, LONG), {"only_if_exists": True}), keys, values),
            st.builds(lambda items: Step("mset", (items,)), st.lists(item, max_size=3)),
            st.builds(lambda k: Step("get", (k,)), keys),
            st.builds(lambda ks: Step("mget", (ks,)), st.lists(keys, max_size=4, unique=True)),
            st.builds(lambda ks: Step("expire", tuple(ks), {"ttl": LONG}), st.lists(long_keys, max_size=3)),
            st.builds(lambda p: Step("keys", (p,)), prefixes),
            st.builds(lambda ks: Step("delete", (ks,)), st.lists(keys, max_size=3)),
        ]
    store_step = st.one_of(*steps)
    every = [*steps, st.builds(lambda s: Step("advance", (s,)), advances)]
    if virtual:
        # jump to (one ns before / at / one ns after) the n-th pending deadline: boundaries are where stores go wrong
        every.append(
            st.builds(
                lambda n, d: Step("advance_to_deadline", (n, d)), st.integers(0, 3), st.sampled_from((-1, 0, 0, 1))
            )
        )
    if full:
        every.append(
            st.builds(lambda ss: Step("concurrently", tuple(ss)), st.lists(store_step, min_size=2, max_size=3))
        )
    return st.lists(st.one_of(*every), min_size=10 if virtual else 4, max_size=60 if virtual else 15)


@dataclass
class StatefulFailure:
    """The first divergence of one program: where, what, and the steps that led there."""

    steps: list[Step]
    index: int
    message: str
    transcript: list[str] = field(default_factory=list)


class _Inconclusive(Exception):
    """Real time ran too far between two advances for the model to judge the example exactly."""


def _name(error: type[BaseException] | None) -> str:
    return "nothing" if error is None else error.__name__


def _swapped_rejection(expected: Outcome, actual: Outcome) -> bool:
    """The store refused a call the model refuses, but with the other of ``TypeError``/``ValueError``."""
    refusals = (TypeError, ValueError)
    return expected.error in refusals and actual.error in refusals and actual.error is not expected.error


async def run_program(h: Harness, program: list[Step], warnings: set[str] | None = None) -> StatefulFailure | None:
    """Run ``program`` on a fresh store from ``h``'s factory and return its first divergence from the model.

    A refusal with the other of ``TypeError``/``ValueError`` is not a divergence: it is added to ``warnings``.
    """
    store, clock = await h.factory()
    model = ReferenceModel()
    tolerance = h.mode.tolerance_ns / 1e9
    transcript: list[str] = []
    window = None if h.mode.virtual else ShortTtlWindow(h.mode.short_ttl)
    await store.start()
    try:
        for index, step in enumerate(program):
            if step.method == "advance_to_deadline":
                step = _resolve_deadline(model, *step.args)
            if step.method == "advance":
                seconds = step.args[0]
                if h.mode.virtual:
                    assert clock is not None
                    if h.mode.tolerance_ns:
                        seconds = _clear_of_deadlines(model, seconds, h.mode.tolerance_ns)
                    await clock.advance(seconds)
                else:
                    assert window is not None
                    seconds = seconds + tolerance + 0.005  # sleep past the short TTL plus the tolerance, from now
                    await asyncio.sleep(seconds)
                    window.advanced()
                model.advance(seconds)
                transcript.append(f"advance({step.args[0]!r})")
                continue
            started = time.monotonic()
            if step.method == "concurrently":
                subs = list(step.args)
                actual = list(await asyncio.gather(*(execute(store, s) for s in subs)))
                if window is not None:
                    window.call(step, started, time.monotonic())
                explained = serialisations(model, subs, actual)
                transcript.append(f"{step.render()}  ->  {', '.join(a.render() for a in actual)}")
                if explained is None:
                    if window is not None and window.overran:
                        raise _Inconclusive
                    serial = model.copy()
                    expected = [serial.apply(s) for s in subs]
                    return StatefulFailure(
                        program[: index + 1],
                        index,
                        f"concurrent calls {step.render()} answered {', '.join(a.render() for a in actual)}: no serial "
                        f"order of them explains that (in program order: {', '.join(e.render() for e in expected)})",
                        transcript,
                    )
                model = explained[0]
            else:
                expected_one = model.apply(step)
                actual_one = await execute(store, step)
                if window is not None:
                    window.call(step, started, time.monotonic())
                transcript.append(f"{step.render()}  ->  {actual_one.render()}")
                problem = compare(step, expected_one, actual_one)
                if problem is not None and _swapped_rejection(expected_one, actual_one):
                    if warnings is not None:
                        warnings.add(
                            f"{step.method}() refused an invalid call with {_name(actual_one.error)} where the "
                            f"contract says {_name(expected_one.error)}"
                        )
                    continue
                if problem is not None:
                    if window is not None and window.overran:
                        raise _Inconclusive
                    hint = GUARANTEE_HINT.get(step.method, "")
                    if expected_one.error is not None or (actual_one.error in (TypeError, ValueError)):
                        hint = "G14"
                    return StatefulFailure(
                        program[: index + 1], index, f"{step.render()}: {problem} (see {hint})", transcript
                    )
    finally:
        await store.close()
    return None


def _clear_of_deadlines(model: ReferenceModel, seconds: float, tolerance_ns: int) -> float:
    """An advance of at least ``seconds`` that does not end within ``tolerance_ns`` after a pending deadline.

    A backend with a coarser granularity may still show a key that long after its deadline; landing there would judge
    what the contract leaves open, so the advance goes on to the end of that window.
    """
    target = model.now_ns + round(seconds * NS_PER_SECOND)
    deadlines = sorted({deadline for _, deadline in model.entries.values() if deadline > model.now_ns})
    for deadline in deadlines:
        if deadline <= target < deadline + tolerance_ns:
            target = deadline + tolerance_ns
    return (target - model.now_ns) / NS_PER_SECOND


def _resolve_deadline(model: ReferenceModel, nth: int, offset_ns: int) -> Step:
    """``advance`` to the ``nth`` pending deadline (cyclically) plus ``offset_ns``; 1 s if nothing is pending."""
    pending = sorted({deadline for _, deadline in model.entries.values() if deadline > model.now_ns})
    if not pending:
        return Step("advance", (1,))
    target = pending[nth % len(pending)] + offset_ns
    return Step("advance", (max(0, target - model.now_ns) / NS_PER_SECOND,))


def run_model_based(
    h: Harness, *, max_examples: int, strictness: bool = True, warnings: set[str] | None = None
) -> StatefulFailure | None:
    """Search for a failing program with hypothesis (blocking: call it in a worker thread, one event loop per example).

    Returns the shrunk failure, or ``None`` when ``max_examples`` programs all agreed with the model. ``strictness``
    false leaves strictness inputs out of the programs; ``warnings`` collects refusals with a swapped exception type.
    Raises :class:`~sessionkv.testing.certify.catalogue.Inconclusive` when real time overran every program.
    """
    from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Flaky, Unsatisfiable

    failures: list[StatefulFailure] = []

    @hypothesis_seed(h.seed)
    @settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        verbosity=Verbosity.quiet,
        print_blob=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(program_strategy(h.level, h.mode.virtual, strictness=strictness, short_ttl=h.mode.short_ttl))
    def search(program: list[Step]) -> None:
        try:
            failure = asyncio.run(run_program(h, program, warnings))
        except _Inconclusive:
            reject()
        if failure is not None:
            failures.append(failure)
            raise ContractViolation(failure.message)

    try:
        search()
    except ContractViolation:
        return _minimise(h, failures[-1])
    except Unsatisfiable:
        raise Inconclusive(
            f"real time overran the {h.mode.short_ttl * 1000:.0f} ms TTL in every program the model-based test drew"
        ) from None
    except Flaky:
        if failures:
            failure = failures[-1]
            failure.message += " (did not reproduce on every replay: timing-dependent)"
            return failure
        raise
    return None


def _minimise(h: Harness, failure: StatefulFailure, budget_runs: int = 400) -> StatefulFailure:
    """Remove steps hypothesis left in (it cannot always delete across dependent steps) while the failure remains."""
    best = failure
    runs = 0
    chunk = max(1, len(best.steps) // 2)
    while chunk >= 1 and runs < budget_runs:
        removed = False
        start = 0
        while start < len(best.steps) - 1 and runs < budget_runs:
            candidate = best.steps[:start] + best.steps[start + chunk :]
            runs += 1
            try:
                trial = asyncio.run(run_program(h, candidate)) if candidate else None
            except _Inconclusive:
                trial = None
            if trial is not None and len(trial.steps) < len(best.steps):
                best, removed = trial, True
                continue
            start += chunk
        if not removed:
            chunk //= 2
    return best


def _examples(h: Harness) -> int:
    """Programs of the correctness search (the strictness search draws a third as many)."""
    if not h.mode.virtual:
        return 20
    if h.mode.wall_clock:  # every program starts a fakeredis-like backend under a patched wall clock: slower
        return 200
    return 600 if h.level == "full" else 300


FIX_MODEL: Final = (
    "the message names the guarantee the diverging call breaks (see G..); its dedicated check, if it fails too, says "
    "how to fix it; the model itself validates with sessionkv.store's check_* helpers"
)


@check(MODEL_ID, "seed", fix=FIX_MODEL)
async def MODEL_random_sequences_agree_with_the_reference_model(h: Harness) -> None:
    """Random programs of every operation and clock advance agree with the reference model at every step."""
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        raise CheckSkipped(
            "hypothesis is not installed, so the model-based test cannot run: pip install 'sessionkv[testing]'",
            required=True,
        ) from None
    swapped: set[str] = set()
    examples = _examples(h)
    failure = await asyncio.to_thread(run_model_based, h, max_examples=examples, strictness=False, warnings=swapped)
    if failure is not None:
        raise _violation(h, failure)
    if h.level == "full":
        failure = await asyncio.to_thread(
            run_model_based, h, max_examples=max(1, examples // 3), strictness=True, warnings=swapped
        )
        if failure is not None:
            stripped = [s for s in failure.steps if not is_strictness_input(s)]
            if len(stripped) == len(failure.steps):
                raise _violation(h, failure)
            try:
                persists = await asyncio.to_thread(asyncio.run, run_program(h, stripped))
            except _Inconclusive:
                persists = None
            if persists is not None:
                raise _violation(h, persists)
            raise _violation(h, failure, strictness=True)
    for warning in sorted(swapped):
        h.warn(warning)


def _violation(h: Harness, failure: StatefulFailure, *, strictness: bool = False) -> ContractViolation:
    replay = [f"{i + 1}. {line}" for i, line in enumerate(failure.transcript)]
    only = (
        "; only a strictness input provokes it (the program without its strictness inputs agrees with the model)"
        if strictness
        else ""
    )
    return ContractViolation(
        f"step {failure.index + 1} of a shrunk {len(failure.steps)}-step program: {failure.message}{only}; "
        f"replay with --seed {h.seed}",
        reproduction=replay,
        severity="strictness" if strictness else "correctness",
    )
