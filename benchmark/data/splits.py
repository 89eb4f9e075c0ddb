"""Subject-disjoint splits and nested, stratified label fractions. Pure functions of the index table."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from benchmark.errors import UserError

DEFAULT_RATIOS = {"train": 0.6, "val": 0.2, "test": 0.2}


def stable_rank(keys, seed: int) -> np.ndarray:
    """A deterministic pseudo-random order of string keys that does not depend on their number
    (adding a subject does not reshuffle the others)."""
    h = [hashlib.sha256(f"{seed}:{k}".encode()).hexdigest() for k in keys]
    return np.argsort(np.array(h), kind="stable")


def assign_subject_splits(index: pd.DataFrame, ratios: dict[str, float] | None = None,
                          seed: int = 0) -> pd.Series:
    """Split labelled rows into train/val/test by subject (no subject in two splits).

    Rows whose `split` is already set are kept; if the source gave train/test but no val, a
    val set is carved out of the train subjects. Returns the new split column.
    """
    ratios = ratios or DEFAULT_RATIOS
    split = index["split"].copy()
    todo = split.isna()
    if todo.any():
        subjects = index.loc[todo, "subject_id"].astype(str)
        split.loc[todo] = _split_subjects(subjects, ratios, seed)
    if not (split == "val").any() and (split == "train").any():
        train = split == "train"
        carve = {"train": 1 - ratios["val"] / (ratios["train"] + ratios["val"]),
                 "val": ratios["val"] / (ratios["train"] + ratios["val"])}
        split.loc[train] = _split_subjects(index.loc[train, "subject_id"].astype(str), carve, seed)
    return split


def _split_subjects(subjects: pd.Series, ratios: dict[str, float], seed: int) -> np.ndarray:
    uniq = pd.unique(subjects)
    if len(uniq) < len(ratios):
        raise UserError(f"need at least {len(ratios)} distinct subjects for a subject-disjoint "
                        f"{'/'.join(ratios)} split, found {len(uniq)}")
    order = uniq[stable_rank(uniq, seed)]
    sizes = subjects.value_counts().reindex(order).to_numpy()
    cum = np.cumsum(sizes) / sizes.sum()
    names = list(ratios)
    bounds = np.cumsum([ratios[n] for n in names])
    which = np.searchsorted(bounds, cum - 1e-9, side="left").clip(0, len(names) - 1)
    # Every split gets at least one subject.
    for k in range(len(names)):
        if not (which == k).any():
            which[len(which) - len(names) + k] = k
    assignment = dict(zip(order, (names[k] for k in which), strict=True))
    return subjects.map(assignment).to_numpy()


# The few-labels rule: each class of the train split contributes ceil(fraction × its count) images, and
# at least MIN_PER_CLASS (all of them when it has fewer). So at 1 % of a small set the subset is larger
# than 1 % (161 training images of 4 classes: 4 images, one per class, 2.5 %), never one without a class.
# The rule every protocol has used since its version 1; a protocol's optional `[labels] min_per_class`
# (a preset may set it) raises the floor, and then enters the job keys as any other setting does.
MIN_PER_CLASS = 1


def class_quota(count: int, fraction: float, min_per_class: int = MIN_PER_CLASS) -> int:
    """How many of a class's `count` training images the subset at `fraction` takes (the few-labels rule)."""
    return min(count, max(min_per_class, int(np.ceil(fraction * count - 1e-9))))


def label_fraction(index: pd.DataFrame, fraction: float, seed: int,
                   min_per_class: int = MIN_PER_CLASS) -> np.ndarray:
    """Row positions (into `index`) of the training subset holding `fraction` of the labelled
    train rows, for `seed`.

    - stratified: each class contributes ceil(fraction × its count) rows, and at least
      `min_per_class` (`class_quota`), so no class is ever left without an example;
    - subject-aware: within a class, rows are taken round-robin over subjects in a seeded order,
      so a small subset spreads over as many subjects as it can;
    - nested: for one seed the subsets are prefixes of one order, so 1 % ⊂ 10 % ⊂ 100 %.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"label fraction must be in (0, 1], got {fraction}")
    if min_per_class < 1:
        raise UserError(f"min_per_class must be >= 1 (every class keeps an example), got {min_per_class}")
    train = index.index[(index["split"] == "train").to_numpy() & (index["label"] >= 0).to_numpy()]
    if len(train) == 0:
        raise UserError("the dataset has no labelled training images")
    rng = np.random.default_rng(seed)
    chosen = []
    rows = index.loc[train]
    for _label, group in rows.groupby("label", sort=True):
        subj = group["subject_id"].astype(str).to_numpy()
        uniq = np.unique(subj)
        rng.shuffle(uniq)
        per_subject = []
        for s in uniq:
            members = group.index[subj == s].to_numpy()
            per_subject.append(rng.permutation(members))
        # Round-robin: first item of every subject, then the second, ...
        order = [m[i] for i in range(max(len(m) for m in per_subject)) for m in per_subject if i < len(m)]
        chosen.extend(order[:class_quota(len(order), fraction, min_per_class)])
    positions = index.index.get_indexer(np.sort(np.array(chosen)))
    return positions
