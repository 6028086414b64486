"""On a core-only install (no ``testing`` extra), importing the fault proxy or certification names the extra to
install instead of failing on a bare missing module."""

from __future__ import annotations

import subprocess
import sys

import pytest

EXTRA_PACKAGES = ("hiredis", "hypothesis", "pytest", "pytest_asyncio", "fakeredis")
BLOCK = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Block())
try:
    {statement}
except ModuleNotFoundError as exc:
    print(type(exc).__name__, exc.name, exc, sep="|")
else:
    print("imported")
"""


@pytest.mark.parametrize(
    ("statement", "missing"),
    [
        ("from sessionkv.testing import RedisFaultProxy", "hiredis"),
        ("from sessionkv.testing import FAULTS", "hiredis"),
        ("import sessionkv.testing.faults", "hiredis"),
        ("from sessionkv.testing.faults import RedisFaultProxy", "hiredis"),
        ("from sessionkv.testing import SessionKVStoreContract", "pytest"),
    ],
)
def test_a_missing_extra_package_is_named_with_the_install_command(statement: str, missing: str) -> None:
    code = BLOCK.format(blocked=EXTRA_PACKAGES, statement=statement)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    kind, name, message = out.strip().split("|", 2)
    assert kind == "ModuleNotFoundError"
    assert name == missing
    assert f"needs {missing!r}" in message
    assert "pip install 'sessionkv[testing]'" in message


def test_the_core_testing_tools_import_without_the_extra() -> None:
    code = BLOCK.format(
        blocked=EXTRA_PACKAGES, statement="from sessionkv.testing import RedisServer, VirtualClock, certify"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "imported"


@pytest.mark.parametrize("latency_ms", [10**400, -1, float("inf"), float("nan"), True])
def test_a_fault_parameter_out_of_range_is_a_value_error_never_an_overflow(latency_ms: object) -> None:
    from sessionkv.testing.faults.network import Latency

    with pytest.raises(ValueError, match="latency_ms must be a finite number >= 0"):
        Latency(latency_ms=latency_ms)  # type: ignore[arg-type]
