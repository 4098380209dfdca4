"""The scenarios, by name: each is one module with one Scenario (base.py says what that is).

A new scenario is a module with its Scenario subclass plus one entry in SCENARIOS
(or a ``register_scenario`` call from outside the package); a scenario with settings
of its own also adds its section to config.RunConfig.
"""

from __future__ import annotations

from ae_anomaly.scenarios.base import Scenario
from ae_anomaly.scenarios.corruptions import Corruptions
from ae_anomaly.scenarios.folder import Folder
from ae_anomaly.scenarios.guard import Guard
from ae_anomaly.scenarios.one_class import OneClass
from ae_anomaly.scenarios.unsupervised import Unsupervised

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (Corruptions(), OneClass(), Unsupervised(), Folder(), Guard())
}
# The scenario of a named dataset when none is named (the main job); a dataset given
# as a path means the scenario for own images.
DEFAULT_SCENARIO = Corruptions.name


def get_scenario(name: str) -> Scenario:
    """The scenario registered as ``name`` (config validation has checked the name)."""
    return SCENARIOS[name]


def own_images_scenario() -> str:
    """The name of the scenario for a folder or array file of your own images."""
    return next(name for name, s in SCENARIOS.items() if s.own_images)


def register_scenario(scenario: Scenario) -> None:
    if scenario.name in SCENARIOS:
        raise ValueError(f"a scenario named {scenario.name!r} is already registered")
    SCENARIOS[scenario.name] = scenario
