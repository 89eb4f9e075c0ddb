"""The continued-recipe ablation's numbers and its choice: per track, each candidate recipe's validation
macro-F1 per method (the mean over its pretraining runs and seeds), and the recipe chosen for every method
(its section is rendered by `render.continued_recipe_section`).

The choice reads the validation split only (`val_macro_f1`): for each method, the candidate with its highest
validation macro-F1 (the mean over its pretraining runs and seeds), ties to the recipe listed first. Every method
gets the same candidates, so none is tuned more than another, and each continues with what suits it: protocol
v1 chose one recipe for all (the best mean over the methods), which kept ImageNet's BatchNorm for every method and
collapsed SimCLR's and Barlow Twins' features (effective rank 0 and 1), while other candidates kept theirs. The
mean over the methods is still shown. The test scores are shown beside the choice, after it, and never enter it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from leaderboard.results import CONTINUED_RECIPE, init_method

COLUMNS = ["recipe_name", "level", "eval_protocol"]


def expand(runs: pd.DataFrame) -> pd.DataFrame:
    """The continued-recipe runs of `runs` with their recipe's name, level and evaluation protocol as columns."""
    runs = runs[runs["protocol"] == CONTINUED_RECIPE]
    if runs.empty:
        return runs.assign(**{c: pd.Series(dtype=object) for c in COLUMNS})
    fields = pd.DataFrame(list(runs["ablation"]), index=runs.index)
    out = runs.assign(recipe_name=fields["recipe_name"], level=fields["level"].astype(int),
                      eval_protocol=fields["eval_protocol"])
    return out.sort_values(["track", "level", "init", "pretrain_seed", "seed"], kind="stable")


def knobs_text(knobs: dict) -> str:
    """`encoder_lr_scale=0.1, encoder_bn=frozen` (every knob as the run recorded it)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(knobs.items()))


@dataclass(frozen=True)
class RecipeScore:
    """One candidate on one track: its knobs, each method's mean validation macro-F1 and number of
    pretraining runs, the mean over the methods that count for the choice (NaN when none does), and the
    checkpoints' mean encoder change and pool k-NN after pretraining."""

    name: str
    level: int
    knobs: dict
    val: dict[str, float] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    mean_val: float = math.nan
    encoder_change: float = math.nan
    knn_after: float = math.nan


@dataclass(frozen=True)
class Choice:
    """The recipes of one track and the one chosen for each method. `methods`: those that have every recipe
    (their choice is final; the mean column averages over them); `missing`: method → recipes it lacks (its
    choice, among the recipes it has, is provisional); `chosen`: method → its recipe."""

    recipes: list[RecipeScore]
    methods: list[str]
    missing: dict[str, list[str]]
    chosen: dict[str, RecipeScore]

    @property
    def complete(self) -> bool:
        return not self.missing


def _diagnostic(runs: pd.DataFrame, *path: str) -> float:
    values = []
    for d in runs.drop_duplicates(["init", "pretrain_seed"])["diagnostics"]:
        for key in path:
            d = (d or {}).get(key)
        if d is not None:
            values.append(float(d))
    return sum(values) / len(values) if values else math.nan


def choose(runs: pd.DataFrame) -> Choice:
    """Each method's choice among one track's (expanded) continued-recipe runs, from their validation scores
    alone."""
    methods = sorted({init_method(i) for i in runs["init"]})
    recipes = sorted(runs.groupby("recipe_name"), key=lambda kv: int(kv[1]["level"].iloc[0]))
    have = {m: {name for name, g in recipes if (g["init"].map(init_method) == m).any()} for m in methods}
    names = [name for name, _ in recipes]
    missing = {m: [n for n in names if n not in have[m]] for m in methods if len(have[m]) < len(names)}
    counted = [m for m in methods if m not in missing]
    scores = []
    for name, g in recipes:
        per = {init_method(init): h for init, h in g.groupby("init")}
        val = {m: float(h["val_macro_f1"].mean()) for m, h in per.items()}
        mean = sum(val[m] for m in counted) / len(counted) if counted else math.nan
        ab = g["ablation"].iloc[0]
        scores.append(RecipeScore(name, int(ab["level"]), dict(ab["recipe"]), val,
                                  {m: int(h["pretrain_seed"].nunique()) for m, h in per.items()}, mean,
                                  _diagnostic(g, "encoder_change"), _diagnostic(g, "after", "knn_macro_f1")))
    chosen = {}
    for m in methods:
        ranked = [s for s in scores if m in s.val and not math.isnan(s.val[m])]
        if ranked:
            chosen[m] = max(ranked, key=lambda s: (s.val[m], -s.level))
    return Choice(scores, counted, missing, chosen)


def test_means(runs: pd.DataFrame, choice: Choice) -> dict[str, float]:
    """Per recipe: the test macro-F1 averaged like the choice's validation score (over the counted methods).
    Shown beside the choice; `choose` never reads it."""
    out = {}
    for s in choice.recipes:
        g = runs[(runs["recipe_name"] == s.name) & runs["init"].map(init_method).isin(choice.methods)]
        per = g.groupby("init")["macro_f1"].mean()
        out[s.name] = float(per.mean()) if len(per) else math.nan
    return out


def reference_val(main: pd.DataFrame, runs: pd.DataFrame) -> dict[str, float]:
    """The baselines' mean validation macro-F1 in the track's main results under the evaluation protocol (and
    version) and at the label fraction the recipes were scored with: what a recipe's score compares with."""
    hashes = {ab["eval_protocol_hash"] for ab in runs["ablation"] if ab.get("eval_protocol_hash")}
    mine = main[main["track"].isin(set(runs["track"])) & main["protocol"].isin(set(runs["eval_protocol"]))
                & main["fraction"].isin(set(runs["fraction"])) & main["protocol_hash"].isin(hashes)]
    return {init: float(g["val_macro_f1"].mean()) for init, g in mine.groupby("init")
            if init in ("imagenet", "random")}


def recipe_key(knobs: dict | None) -> str | None:
    """A recipe's identity for comparing the chosen one with what a track's continued rows ran with."""
    return None if knobs is None else json.dumps(knobs, sort_keys=True)
