"""Subject-disjoint splits, exactly. Which subjects are test subjects is part of the protocol (a
result's test set must be the same images in every version of the code), so the splits of small
fixed indexes are pinned here; a change to them is a protocol change."""
import pandas as pd
import pytest

from benchmark.data.splits import assign_subject_splits
from benchmark.errors import UserError


def _index(sizes: list[int], splits: list[str] | None = None) -> pd.DataFrame:
    """Subject p<k> with sizes[k] frames (one video each), all labelled; `splits` as the source gives them."""
    rows = [(f"v{s}", f"p{s}", i, 0, None if splits is None else splits[s]) for s, n in enumerate(sizes)
            for i in range(n)]
    return pd.DataFrame(rows, columns=["video_id", "subject_id", "frame_idx", "label", "split"])


def _by_subject(index: pd.DataFrame, split: pd.Series) -> dict[str, str]:
    per = index.assign(split=split).groupby("subject_id", sort=False)["split"]
    assert (per.nunique() == 1).all()  # subject-disjoint
    return per.first().to_dict()


def test_the_default_split_of_ten_subjects_of_unequal_size():
    index = _index(list(range(1, 11)))  # p0 has 1 frame … p9 has 10
    split = assign_subject_splits(index)
    assert _by_subject(index, split) == {
        "p0": "train", "p1": "test", "p2": "train", "p3": "train", "p4": "train", "p5": "train", "p6": "val",
        "p7": "train", "p8": "val", "p9": "test"}
    assert split.value_counts().to_dict() == {"train": 27, "val": 16, "test": 12}  # of 55 frames: 60/20/20 by subject
    assert assign_subject_splits(index, seed=0).equals(split)
    assert _by_subject(index, assign_subject_splits(index, seed=1)) == {
        "p0": "test", "p1": "train", "p2": "train", "p3": "train", "p4": "train", "p5": "val", "p6": "val",
        "p7": "train", "p8": "train", "p9": "test"}


def test_val_is_carved_from_the_train_subjects_a_source_gives():
    index = _index([4] * 10, ["train"] * 8 + ["test"] * 2)
    split = assign_subject_splits(index)
    assert _by_subject(index, split) == {
        "p0": "train", "p1": "val", "p2": "train", "p3": "train", "p4": "train", "p5": "train", "p6": "val",
        "p7": "train", "p8": "test", "p9": "test"}
    assert split.value_counts().to_dict() == {"train": 24, "val": 8, "test": 8}  # val = 0.2 / 0.8 of train


def test_three_subjects_give_one_to_each_split_whatever_their_sizes():
    index = _index([5, 1, 1])
    assert _by_subject(index, assign_subject_splits(index)) == {"p0": "val", "p1": "test", "p2": "train"}


def test_two_subjects_cannot_make_three_disjoint_splits():
    with pytest.raises(UserError) as info:
        assign_subject_splits(_index([3, 3]))
    assert str(info.value) == "need at least 3 distinct subjects for a subject-disjoint train/val/test split, found 2"


def test_equal_subjects_split_exactly_at_the_ratios():
    index = _index([2] * 10)
    split = assign_subject_splits(index)
    assert _by_subject(index, split) == {
        "p0": "train", "p1": "test", "p2": "train", "p3": "train", "p4": "train", "p5": "train", "p6": "val",
        "p7": "train", "p8": "val", "p9": "test"}
    assert split.value_counts().to_dict() == {"train": 12, "val": 4, "test": 4}  # 6/2/2 subjects, no rounding


def test_ratios_short_of_one_leave_the_rest_to_the_last_split():
    index = _index([1] * 10)
    split = assign_subject_splits(index, ratios={"train": 0.5, "val": 0.2, "test": 0.2})
    assert split.value_counts().to_dict() == {"train": 5, "test": 3, "val": 2}


def test_val_takes_a_quarter_of_the_train_subjects_and_is_carved_even_without_a_test_split():
    given = _index([1] * 25, ["train"] * 20 + ["test"] * 5)
    assert assign_subject_splits(given).value_counts().to_dict() == {"train": 15, "val": 5, "test": 5}  # 0.2 / 0.8
    only_train = _index([1] * 8, ["train"] * 8)
    assert assign_subject_splits(only_train).value_counts().to_dict() == {"train": 6, "val": 2}
