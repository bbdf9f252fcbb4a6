"""What each scenario does and what a correct monitor should say about it.

Plain data, no numpy: the command line lists scenarios without loading the data stack.
A scenario is defined on roles, not columns: the *tilt* (a numerical feature whose larger
values arrive more often), the *mix* (a category level that becomes rarer) and the
*concept* (the target shifts in one segment); the world (``world.py``) names the columns
for the served model's table. Summaries say it generically; ``example`` says it on the
diamonds table.

Expectations are what a correct monitor says at the *end* of a run (for `recovery`: after the
world returned to normal); `any` where both answers are defensible (e.g. a covariate shift
towards dearer diamonds raises the RMSE in dollars without any change of concept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Expectation = str  # "drift", "none" or "any" (a correct monitor may say either)
Role = Literal["tilt", "mix", "concept", "prior"]

ONSET = 0.3
"""Progress at which sudden shifts start: the first 30% of a run is normal traffic."""

RECOVERY_END = 0.65
"""Progress at which `recovery` returns to normal."""

ROLES = {"tilt": "<tilt>: the numerical feature most correlated with the target (--tilt)",
         "mix": "<mix>: the first categorical feature's most frequent level (--mix)",
         "concept": "<concept>: the target x1.25 (or +0.25 sd) in a segment of 25-50% of rows "
                    "(--concept); a classifier's labels moved to the next class in 30% of it",
         "prior": "<prior>: a classifier's most frequent class"}
"""What the placeholders of the summaries stand for, for the command line's listing."""


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    summary: str  # generic: <tilt>, <mix>, <concept> stand for the world's columns
    example: str  # the same on the diamonds table (what the demo shows)
    expect_data: Expectation
    expect_concept: Expectation
    drifts: tuple[Role, ...] = ()  # roles whose feature drifts (a concept moves no feature)
    needs: tuple[Role, ...] = ()  # roles the table must be able to play

    def describe(self, words: dict[str, str]) -> str:
        """The summary with the world's columns in place of the placeholders."""
        text = self.summary
        for role, word in words.items():
            text = text.replace(f"<{role}>", word)
        return text


CATALOG: dict[str, ScenarioInfo] = {s.name: s for s in [
    ScenarioInfo(
        "none", "resampled reference traffic; nothing changes",
        example="resampled reference traffic; nothing changes",
        expect_data="none", expect_concept="none"),
    ScenarioInfo(
        "lab", "the lab's per-request noise: numerical features ±1%, the target ±1%; a "
        "correct monitor stays quiet",
        example="the lab's per-request noise: carat ±2%, depth/table ±1%, price ±1%; a "
        "correct monitor stays quiet",
        expect_data="none", expect_concept="none"),
    ScenarioInfo(
        "covariate-gradual", "rows with a larger <tilt> arrive more and more often "
        "(re-weighted sampling, labels stay real)",
        example="heavier diamonds arrive more and more often (re-weighted sampling, prices "
        "stay real)",
        expect_data="drift", expect_concept="any", drifts=("tilt",), needs=("tilt",)),
    ScenarioInfo(
        "covariate-sudden", "from 30% of the run, rows with a larger <tilt> arrive far "
        "more often",
        example="from 30% of the run, heavier diamonds arrive far more often",
        expect_data="drift", expect_concept="any", drifts=("tilt",), needs=("tilt",)),
    ScenarioInfo(
        "category-mix", "from 30% of the run, rows with <mix> arrive at 0.4 times their "
        "rate",
        example="from 30% of the run, Ideal cuts fall from 40% to ~21% of traffic",
        expect_data="drift", expect_concept="any", drifts=("mix",), needs=("mix",)),
    ScenarioInfo(
        "class-prior", "from 30% of the run, rows of <prior> arrive at 0.4 times their rate "
        "(a classifier's class-prior shift; labels stay real)",
        example="(a classifier's scenario: the diamonds model is a regression)",
        expect_data="any", expect_concept="any", needs=("prior",)),
    ScenarioInfo(
        "concept", "from 30% of the run, <concept>; inputs unchanged",
        example="from 30% of the run, colours D, E, F are 25% dearer; inputs unchanged",
        expect_data="none", expect_concept="drift", needs=("concept",)),
    ScenarioInfo(
        "mixed", "from 30% of the run, a larger <tilt> and <concept>",
        example="from 30% of the run, heavier diamonds and D/E/F 25% dearer",
        expect_data="drift", expect_concept="drift", drifts=("tilt",),
        needs=("tilt", "concept")),
    ScenarioInfo(
        "recovery", "normal, then a larger <tilt> and <concept> from 30% to 65% of the run, "
        "then normal again: drift must appear and clear",
        example="normal, then heavier and D/E/F dearer from 30% to 65% of the run, then "
        "normal again: drift must appear and clear",
        expect_data="none", expect_concept="none", needs=("tilt", "concept")),
]}
