"""Multi-node simulations: session nodes living through crashes, partitions and store failures, checked on a history.

Library entry points: :func:`run_scenario` (one run, a :class:`RunResult`), :class:`Scenario` and
:class:`Parameters` (what a scenario script builds), the policies (:class:`FaithfulPolicy`, :class:`HardenedPolicy`,
or your own :class:`Policy`). See ``docs/scenarios.md``.
"""

from sessionkv.sim.model import Action, Latency, Parameters, Scenario, ScenarioError, builtin_scenarios, load_scenario
from sessionkv.sim.policies import FaithfulPolicy, HardenedPolicy, NodeContext, NodeLogic, Policy
from sessionkv.sim.result import RunResult, run_scenario

__all__ = [
    "Action",
    "FaithfulPolicy",
    "HardenedPolicy",
    "Latency",
    "NodeContext",
    "NodeLogic",
    "Parameters",
    "Policy",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "builtin_scenarios",
    "load_scenario",
    "run_scenario",
]
