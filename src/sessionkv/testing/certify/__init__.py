"""Certification of ``SessionKVStore`` backends: the guarantee catalogue, its checks, the runner and the report.

``sessionkv certify TARGET`` and the pytest contract classes in :mod:`sessionkv.testing.certify.suite` run the same
checks (:data:`~sessionkv.testing.certify.catalogue.CHECKS`). See ``docs/certify.md``.
"""

from sessionkv.testing.certify.catalogue import (
    CATALOGUE,
    CHECKS,
    Check,
    CheckSkipped,
    ContractViolation,
    Inconclusive,
    StrictnessWarning,
    checks_for,
)
from sessionkv.testing.certify.harness import Harness, TimeMode
from sessionkv.testing.certify.runner import (
    Backend,
    Report,
    TargetError,
    certify,
    load_target,
    prepare_backend,
    verdict_mismatches,
)

__all__ = [
    "CATALOGUE",
    "CHECKS",
    "Backend",
    "Check",
    "CheckSkipped",
    "ContractViolation",
    "Harness",
    "Inconclusive",
    "Report",
    "StrictnessWarning",
    "TargetError",
    "TimeMode",
    "certify",
    "checks_for",
    "load_target",
    "prepare_backend",
    "verdict_mismatches",
]
