"""The two registry additions the simulator's hardened policy uses: register_many and request_close(ttl=)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sessionkv import InMemorySessionKVStore, SessionInfo, SessionRegistry
from sessionkv import registry as registry_module
from sessionkv.testing.virtual_time import VirtualClock, run


def _registry(clock: VirtualClock) -> tuple[SessionRegistry, InMemorySessionKVStore]:
    store = InMemorySessionKVStore(clock=clock)
    return SessionRegistry(store, node_id="n1", ttl=30.0, clock=clock), store


def test_register_many_writes_exact_records_and_re_registers_vanished_ones() -> None:
    clock = VirtualClock()

    async def main() -> None:
        registry, store = _registry(clock)
        first = await registry.register("c/1", "s1")
        second = await registry.register("c2", 'quote"d')
        await store.delete(["sessions/c%2F1/s1"])  # lost by the store
        await clock.advance(10)
        await registry.register_many([first, second])
        for info in (first, second):
            stored = await registry.get(info.call_id, info.session_id)
            assert stored == dataclasses.replace(info, metrics_updated_at=clock.time())
            raw = await store.get(f"sessions/{info.call_id.replace('/', '%2F')}/{info.session_id}")
            assert raw == dataclasses.replace(info, metrics_updated_at=clock.time()).to_json()
        # a fresh TTL: alive 29 s later, gone at 30
        await clock.advance(29.999)
        assert await registry.get("c2", 'quote"d') is not None
        await clock.advance(0.001)
        assert await registry.get("c2", 'quote"d') is None
        # changed metrics are seen even though the same objects come back
        first.metrics["load"] = 0.5
        await registry.register_many([first])
        stored = await registry.get("c/1", "s1")
        assert stored is not None
        assert stored.metrics == {"load": 0.5}
        assert json.loads((await store.get("sessions/c%2F1/s1")) or b"")["metrics"] == {"load": 0.5}

    run(main(), clock=clock)


def test_register_many_validates_everything_before_writing() -> None:
    clock = VirtualClock()

    async def main() -> None:
        registry, store = _registry(clock)
        good = SessionInfo("s1", "c1", "n1", 1.0, 1.0)
        with pytest.raises(ValueError, match="session_id"):
            await registry.register_many([good, SessionInfo("", "c1", "n1", 1.0, 1.0)])
        with pytest.raises(TypeError, match="SessionInfo"):
            await registry.register_many([good, {"session_id": "s2"}])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="finite"):
            await registry.register_many([SessionInfo("s3", "c1", "n1", 1.0, 1.0, {"x": float("nan")})])
        with pytest.raises(ValueError, match="started_at must be finite"):
            await registry.register_many([good, SessionInfo("s4", "c1", "n1", float("nan"), 1.0)])
        with pytest.raises(TypeError, match="started_at must be epoch seconds"):
            await registry.register_many([good, SessionInfo("s4", "c1", "n1", "1.0", 1.0)])  # type: ignore[arg-type]
        assert await store.keys("") == []
        await registry.register_many([])
        assert await store.keys("") == []

    run(main(), clock=clock)


def test_records_of_a_batched_heartbeat_are_read_back_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # as after register(): the registry remembers the bytes it wrote, so reading them back costs no JSON decode
    decoded: list[str] = []
    load = registry_module._load_object

    def counting_load(raw: bytes | str, key: str) -> dict[str, object]:
        decoded.append(key)
        return load(raw, key)

    monkeypatch.setattr(registry_module, "_load_object", counting_load)
    clock = VirtualClock()

    async def main() -> None:
        registry, _ = _registry(clock)
        infos = [SessionInfo(f"remembered-{i}", "batch-read", "n1", 1.25, 1.25, {"load": i}) for i in range(3)]
        await clock.advance(1)
        await registry.register_many(infos)
        expected = [dataclasses.replace(info, metrics_updated_at=clock.time()) for info in infos]
        assert await registry.get_for_call("batch-read") == expected
        assert await registry.get("batch-read", "remembered-0") == expected[0]
        assert await registry.update_metrics("batch-read", "remembered-1", {"load": 7})
        reread = await registry.get("batch-read", "remembered-1")
        assert reread is not None
        assert reread.metrics == {"load": 7}

    run(main(), clock=clock)
    assert decoded == []


def test_request_close_with_its_own_ttl() -> None:
    clock = VirtualClock()

    async def main() -> None:
        registry, _ = _registry(clock)
        await registry.request_close("c1", "s1", ttl=3600)
        await registry.request_close("c1", "s2")
        await clock.advance(31)
        assert await registry.get_close_requests({"s1": "c1", "s2": "c1"}) == ["s1"]
        with pytest.raises(ValueError):
            await registry.request_close("c1", "s1", ttl=0)

    run(main(), clock=clock)
