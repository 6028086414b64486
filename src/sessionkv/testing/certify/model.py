"""The reference model: what a correct store answers, step by step, on an exact integer clock.

The model validates arguments with the very helpers of :mod:`sessionkv.store`, so it predicts the same exceptions the
contract prescribes. It is the judge of the model-based test and of every replay used to shrink a failing check.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sessionkv.clock import NS_PER_SECOND
from sessionkv.store import (
    check_expire_keys,
    check_items,
    check_key,
    check_keys,
    check_prefix,
    check_ttl_ns,
    check_value,
)

__all__ = [
    "Expected",
    "Outcome",
    "ReferenceModel",
    "Step",
    "compare",
    "describe_difference",
    "elide",
    "execute",
    "render_call",
    "render_value",
    "serialisations",
    "snapshot",
]

WRITES = frozenset({"set", "mset", "expire", "delete"})


def snapshot(value: Any) -> Any:
    """A copy of call arguments as they were at call time (a caller may mutate its buffers afterwards)."""
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, memoryview):
        return memoryview(bytes(value))
    if isinstance(value, list):
        return [snapshot(v) for v in value]
    if isinstance(value, tuple):
        return tuple(snapshot(v) for v in value)
    return value


ELIDE_AFTER = 6
"""Collections longer than this are shown as their first three items and a count (:func:`elide`)."""


def elide(items: Sequence[object], *, limit: int = ELIDE_AFTER, show: int = 3) -> str:
    """``items`` rendered in full when there are at most ``limit``, else ``[a, b, c, ... N items]``.

    The one way certification prints a collection (or a long argument list), so no failure message grows with the
    size of the data.
    """
    opener, closer = ("(", ")") if isinstance(items, tuple) else ("[", "]")
    trailing = "," if isinstance(items, tuple) and len(items) == 1 else ""
    return opener + _elided_items(items, limit=limit, show=show) + trailing + closer


def _elided_items(items: Sequence[object], *, limit: int = ELIDE_AFTER, show: int = 3) -> str:
    if len(items) <= limit:
        return ", ".join(render_value(v) for v in items)
    return f"{', '.join(render_value(v) for v in items[:show])}, ... {len(items)} items"


def render_value(value: object) -> str:
    """A short ``repr``: long bytes, strings and collections are cut, with their size."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        shown = repr(data[:24] + b"...") + f"[{len(data)} bytes]" if len(data) > 32 else repr(data)
        return shown if type(value) is bytes else f"{type(value).__name__}({shown})"
    if isinstance(value, (list, tuple)):
        return elide(value)
    if isinstance(value, str) and len(value) > 40:
        return repr(value[:20] + "...") + f"[{len(value)} chars]"
    return repr(value)


def describe_difference(actual: object, expected: object) -> str:
    """``expected X, got Y``; for two collections also how many items are extra and missing (each list elided)."""
    text = f"expected {render_value(expected)}, got {render_value(actual)}"
    if isinstance(actual, (list, tuple)) and isinstance(expected, (list, tuple)):
        try:
            have, want = Counter(actual), Counter(expected)
        except TypeError:
            return text
        extra, missing = sorted((have - want).elements(), key=repr), sorted((want - have).elements(), key=repr)
        if extra or missing:
            text += f" ({len(extra)} extra: {elide(extra)}; {len(missing)} missing: {elide(missing)})"
        elif list(actual) != list(expected):
            text += " (the same items in another order)"
    return text


def render_call(method: str, args: Sequence[object], kwargs: dict[str, object]) -> str:
    parts = ([_elided_items(args)] if args else []) + [f"{k}={render_value(v)}" for k, v in kwargs.items()]
    return f"{method}({', '.join(parts)})"


@dataclass(frozen=True)
class Step:
    """One operation: a store method with its arguments, ``advance`` (seconds), or ``concurrently`` (sub-steps)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        if self.method == "concurrently":
            return "concurrently(" + ", ".join(s.render() for s in self.args) + ")"
        return render_call(self.method, self.args, self.kwargs)


@dataclass(frozen=True)
class Outcome:
    """What a call did: returned ``value``, or raised an exception of type ``error``."""

    value: Any = None
    error: type[BaseException] | None = None
    message: str = ""

    def render(self) -> str:
        if self.error is not None:
            return f"raises {self.error.__name__}" + (f": {self.message}" if self.message else "")
        return render_value(self.value)


Expected = Outcome


class ReferenceModel:
    """A correct store, in a dict, on an integer-nanosecond clock that moves only through :meth:`advance`."""

    def __init__(self) -> None:
        self.now_ns = 0
        self.entries: dict[str, tuple[bytes, int]] = {}

    def copy(self) -> ReferenceModel:
        twin = ReferenceModel()
        twin.now_ns = self.now_ns
        twin.entries = dict(self.entries)
        return twin

    def live(self, key: str) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry[1] > self.now_ns

    def live_keys(self) -> list[str]:
        return sorted(k for k in self.entries if self.live(k))

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * NS_PER_SECOND)

    def apply(self, step: Step) -> Outcome:
        """Apply ``step`` and return what a correct store answers; a rejected call changes nothing."""
        try:
            return Outcome(getattr(self, "_" + step.method)(*step.args, **step.kwargs))
        except (TypeError, ValueError) as exc:
            return Outcome(error=type(exc), message=str(exc))

    def _start(self) -> None:
        return None

    def _close(self) -> None:
        return None

    def _advance(self, seconds: float) -> None:
        self.advance(seconds)

    def _set(self, key: object, value: object, ttl: object, *, only_if_exists: bool = False) -> None:
        checked_key, data, ttl_ns = check_key(key), check_value(value), check_ttl_ns(ttl)
        if only_if_exists and not self.live(checked_key):
            return
        self.entries[checked_key] = (data, self.now_ns + ttl_ns)

    def _mset(self, items: object) -> None:
        for key, data, ttl_ns in check_items(items):
            self.entries[key] = (data, self.now_ns + ttl_ns)

    def _get(self, key: object) -> bytes | None:
        checked = check_key(key)
        return self.entries[checked][0] if self.live(checked) else None

    def _mget(self, keys: object) -> list[bytes | None]:
        return [self.entries[k][0] if self.live(k) else None for k in check_keys(keys)]

    def _expire(self, *keys: object, ttl: object) -> None:
        wanted = check_expire_keys(keys)
        ttl_ns = check_ttl_ns(ttl)
        for key in wanted:
            if self.live(key):
                self.entries[key] = (self.entries[key][0], self.now_ns + ttl_ns)

    def _keys(self, prefix: object) -> list[str]:
        checked = check_prefix(prefix)
        return [k for k in self.live_keys() if k.startswith(checked)]

    def _delete(self, keys: object) -> None:
        for key in check_keys(keys):
            self.entries.pop(key, None)


async def execute(store: Any, step: Step) -> Outcome:
    """Run one store call and capture its outcome (exceptions included; ``BaseException`` other than cancellation)."""
    try:
        value = await getattr(store, step.method)(*snapshot(step.args), **step.kwargs)
    except Exception as exc:
        return Outcome(error=type(exc), message=str(exc))
    return Outcome(value)


def compare(step: Step, expected: Outcome, actual: Outcome) -> str | None:
    """``None`` when ``actual`` is what the contract allows given ``expected``, else what differs, in words."""
    if expected.error is not None:
        if actual.error is None:
            return f"expected {expected.error.__name__} ({expected.message}), but the call returned {actual.render()}"
        if not issubclass(actual.error, expected.error):
            return f"expected {expected.error.__name__}, got {actual.render()}"
        return None
    if actual.error is not None:
        return f"expected {expected.render()}, but the call {actual.render()}"
    method = step.method
    if method == "get":
        if actual.value is not None and type(actual.value) is not bytes:
            return f"returned a {type(actual.value).__name__}, not bytes: {actual.render()}"
        if actual.value != expected.value:
            return f"expected {expected.render()}, got {actual.render()}"
    elif method == "mget":
        if not isinstance(actual.value, list):
            return f"returned a {type(actual.value).__name__}, not a list"
        wrong_type = [type(v).__name__ for v in actual.value if v is not None and type(v) is not bytes]
        if wrong_type:
            return f"returned {wrong_type[0]} values, not bytes: {actual.render()}"
        if actual.value != expected.value:
            return describe_difference(actual.value, expected.value)
    elif method == "keys":
        try:
            found = Counter(actual.value)
        except TypeError:
            return f"returned {actual.render()}, not a list of str"
        repeated = sorted(k for k, n in found.items() if n > 1)
        if repeated:
            return f"listed {elide(repeated)} more than once: {elide(sorted(actual.value))}"
        if sorted(found) != sorted(expected.value):
            return describe_difference(sorted(found), sorted(expected.value))
    return None


def serialisations(
    model: ReferenceModel, steps: Sequence[Step], actual: Sequence[Outcome]
) -> tuple[ReferenceModel, list[Outcome]] | None:
    """The model after some order of ``steps`` that explains every outcome in ``actual``, or ``None`` if none does.

    A store is atomic per operation (G16) when concurrent calls behave as if run one at a time in *some* order.
    """
    indices = range(len(steps))
    for order in itertools.permutations(indices):
        twin = model.copy()
        expected: list[Outcome | None] = [None] * len(steps)
        for index in order:
            expected[index] = twin.apply(steps[index])
        if all(compare(steps[i], expected[i], actual[i]) is None for i in indices):  # type: ignore[arg-type]
            return twin, [e for e in expected if e is not None]
    return None
