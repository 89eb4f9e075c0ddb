"""Label-fraction subsets, exactly. The subset a seed draws is part of the protocol: a result of
seed k must mean the same training images in every version of the code, so the subsets of a small
fixed index are pinned here (a change to them is a protocol change: bump the protocol version)."""
import pandas as pd
import pytest

from benchmark.data.splits import label_fraction
from benchmark.errors import UserError

# 12 labelled train rows over 4 subjects, classes first seen in the order 2, 0, 1
# (class 2: rows 0 3 6 7 10; class 0: rows 1 4 8 11; class 1: rows 2 5 9), then 2 validation rows.
LABELS = [2, 0, 1, 2, 0, 1, 2, 2, 0, 1, 2, 0]


@pytest.fixture
def index() -> pd.DataFrame:
    rows = [(f"v{i}", f"s{i % 4}", i, label, "train") for i, label in enumerate(LABELS)]
    rows += [("x", "s9", 0, 0, "val"), ("y", "s9", 1, 1, "val")]
    return pd.DataFrame(rows, columns=["video_id", "subject_id", "frame_idx", "label", "split"])


@pytest.mark.parametrize(("seed", "fraction", "rows"), [
    (0, 0.01, [0, 5, 11]), (0, 0.25, [0, 5, 10, 11]), (0, 0.5, [0, 2, 5, 7, 8, 10, 11]),
    (7, 0.01, [0, 2, 8]), (7, 0.25, [0, 2, 6, 8]), (7, 0.5, [0, 2, 3, 5, 6, 8, 11]),
    (0, 1.0, list(range(12))), (7, 1.0, list(range(12))),
])
def test_each_seed_draws_the_same_subset_in_every_version(index, seed, fraction, rows):
    assert label_fraction(index, fraction, seed).tolist() == rows


@pytest.mark.parametrize(("fraction", "per_class"), [
    (0.01, {2: 1, 0: 1, 1: 1}),  # at least one of every class, never more than the fraction asks
    (0.25, {2: 2, 0: 1, 1: 1}),  # ceil(0.25 × 5, 0.25 × 4, 0.25 × 3)
    (0.5, {2: 3, 0: 2, 1: 2}),
])
def test_each_class_contributes_ceil_of_its_share(index, fraction, per_class):
    for seed in range(5):
        picked = index.loc[label_fraction(index, fraction, seed), "label"]
        assert picked.value_counts().to_dict() == per_class


def test_a_single_labelled_image_is_a_subset_and_none_is_a_clear_error(index):
    one = index.copy()
    one.loc[1:, "label"] = -1
    assert label_fraction(one, 0.01, 0).tolist() == [0]
    none = index.copy()
    none["label"] = -1
    with pytest.raises(UserError) as info:
        label_fraction(none, 0.5, 0)
    assert str(info.value) == "the dataset has no labelled training images"
