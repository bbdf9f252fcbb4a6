"""What each scenario does and what a correct monitor should say about it.

Plain data, no numpy: the command line lists scenarios without loading the data stack.
Expectations are what a correct monitor says at the *end* of a run (for `recovery`: after the
world returned to normal); `any` where both answers are defensible (e.g. a covariate shift
towards dearer diamonds raises the RMSE in dollars without any change of concept).
"""

from __future__ import annotations

from dataclasses import dataclass

Expectation = str  # "drift", "none" or "any" (a correct monitor may say either)

ONSET = 0.3
"""Progress at which sudden shifts start: the first 30% of a run is normal traffic."""

RECOVERY_END = 0.65
"""Progress at which `recovery` returns to normal."""


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    summary: str
    expect_data: Expectation
    expect_concept: Expectation
    drifted_features: tuple[str, ...]


CATALOG: dict[str, ScenarioInfo] = {s.name: s for s in [
    ScenarioInfo("none", "resampled reference traffic; nothing changes", "none", "none", ()),
    ScenarioInfo("lab", "the lab's per-request noise: carat ±2%, depth/table ±1%, price ±1%; "
                 "a correct monitor stays quiet", "none", "none", ()),
    ScenarioInfo("covariate-gradual", "heavier diamonds arrive more and more often "
                 "(re-weighted sampling, prices stay real)", "drift", "any", ("carat",)),
    ScenarioInfo("covariate-sudden", "from 30% of the run, heavier diamonds arrive far more "
                 "often", "drift", "any", ("carat",)),
    ScenarioInfo("category-mix", "from 30% of the run, Ideal cuts fall from 40% to ~21% of "
                 "traffic", "drift", "any", ("cut",)),
    ScenarioInfo("concept", "from 30% of the run, colours D, E, F are 25% dearer; inputs "
                 "unchanged", "none", "drift", ()),
    ScenarioInfo("mixed", "from 30% of the run, heavier diamonds and D/E/F 25% dearer",
                 "drift", "drift", ("carat",)),
    ScenarioInfo("recovery", "normal, then heavier and D/E/F dearer from 30% to 65% of the "
                 "run, then normal again: drift must appear and clear", "none", "none", ()),
]}
