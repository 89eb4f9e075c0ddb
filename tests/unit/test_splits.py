import numpy as np
import pandas as pd
import pytest

from benchmark.data.splits import assign_subject_splits, label_fraction
from benchmark.errors import UserError


def _index(n_subjects=30, per_subject=10, n_classes=5, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for k in range(per_subject):
            rows.append((f"v{s}", f"s{s:03d}", k, int(rng.integers(n_classes)), None))
    return pd.DataFrame(rows, columns=["video_id", "subject_id", "frame_idx", "label", "split"])


def test_subject_splits_are_disjoint_and_cover_everything():
    idx = _index()
    idx["split"] = assign_subject_splits(idx)
    assert set(idx["split"]) == {"train", "val", "test"}
    by_subject = idx.groupby("subject_id")["split"].nunique()
    assert (by_subject == 1).all()
    share = idx["split"].value_counts(normalize=True)
    assert 0.45 < share["train"] < 0.75 and share["val"] > 0.1 and share["test"] > 0.1


def test_subject_split_of_a_subject_does_not_depend_on_the_others():
    idx = _index(n_subjects=40)
    a = assign_subject_splits(idx)
    sub = idx[idx["subject_id"] != "s000"].reset_index(drop=True)
    b = assign_subject_splits(sub)
    # Removing one subject moves at most the subjects near the split boundaries.
    merged = pd.Series(a.to_numpy()[idx["subject_id"] != "s000"]) == pd.Series(b)
    assert merged.mean() > 0.8


def test_val_is_carved_from_train_when_the_source_gives_only_train_and_test():
    idx = _index()
    idx["split"] = np.where(idx["subject_id"] < "s020", "train", "test")
    split = assign_subject_splits(idx)
    assert (split[idx["split"] == "test"] == "test").all()
    assert (split == "val").any()
    assert (idx.assign(split=split).groupby("subject_id")["split"].nunique() == 1).all()


def test_too_few_subjects_is_a_clear_error():
    with pytest.raises(UserError, match="distinct subjects"):
        assign_subject_splits(_index(n_subjects=2))


@pytest.fixture
def split_index():
    idx = _index(n_subjects=60, per_subject=20)
    idx["split"] = assign_subject_splits(idx)
    return idx


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fractions_are_nested_stratified_and_reproducible(split_index, seed):
    subsets = {f: set(label_fraction(split_index, f, seed)) for f in (0.01, 0.1, 1.0)}
    assert subsets[0.01] <= subsets[0.1] <= subsets[1.0]
    assert subsets[0.01] != subsets[0.1]
    assert set(label_fraction(split_index, 0.1, seed)) == subsets[0.1]
    train = split_index[split_index["split"] == "train"]
    assert subsets[1.0] == set(train.index)
    labels = split_index.loc[sorted(subsets[0.01]), "label"]
    assert set(labels) == set(train["label"])  # every class present even at 1 %
    for cls, n in train["label"].value_counts().items():
        got = (split_index.loc[sorted(subsets[0.1]), "label"] == cls).sum()
        assert got == int(np.ceil(0.1 * n))


def test_different_seeds_draw_different_subsets(split_index):
    assert set(label_fraction(split_index, 0.1, 0)) != set(label_fraction(split_index, 0.1, 1))


def test_small_fraction_spreads_over_subjects(split_index):
    train = split_index[split_index["split"] == "train"]
    picked = split_index.loc[label_fraction(split_index, 0.1, 0)]
    for cls, group in picked.groupby("label"):
        available = train.loc[train["label"] == cls, "subject_id"].nunique()
        # round-robin over subjects: as many distinct subjects as the subset size allows
        assert group["subject_id"].nunique() == min(len(group), available)


def test_only_train_rows_are_used(split_index):
    picked = split_index.loc[label_fraction(split_index, 1.0, 3)]
    assert (picked["split"] == "train").all()


@pytest.mark.parametrize("bad", [0, -0.1, 1.5])
def test_fraction_outside_range_is_rejected(split_index, bad):
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        label_fraction(split_index, bad, 0)
