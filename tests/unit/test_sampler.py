"""Which frames make each batch: temporal pairs stay within K frames of one video; everything is
a pure function of (seed, step)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import UserError
from benchmark.pretrain.sampler import PairSampler, Positives, parse_positives


def _index() -> pd.DataFrame:
    # Three videos of different lengths, frame numbers with a stride of 5 (as a strided cache has),
    # rows of the videos interleaved so that row order says nothing about time.
    rows = []
    for vid, n in (("a", 10), ("b", 7), ("c", 1)):
        rows += [(vid, f"s-{vid}", 5 * k, -1, "pretrain") for k in range(n)]
    df = pd.DataFrame(rows, columns=["video_id", "subject_id", "frame_idx", "label", "split"])
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_parse_positives():
    assert parse_positives("same_frame") == Positives("same_frame")
    assert parse_positives("temporal:3") == Positives("temporal", 3)
    for bad in ("temporal", "temporal:0", "temporal:x", "video"):
        with pytest.raises(UserError, match="--positives"):
            parse_positives(bad)


def test_temporal_pairs_are_within_k_and_within_one_video():
    index = _index()
    positions = np.arange(len(index))
    sampler = PairSampler(index, positions, Positives("temporal", 10), batch_size=6, seed=1)
    seen_gaps = set()
    for step in range(3 * sampler.steps_per_epoch):
        anchors, partners = sampler.batch(step)
        assert partners is not None and len(partners) == len(anchors) == 6
        a, p = index.iloc[anchors], index.iloc[partners]
        assert (a["video_id"].to_numpy() == p["video_id"].to_numpy()).all()
        gaps = np.abs(a["frame_idx"].to_numpy() - p["frame_idx"].to_numpy())
        assert (gaps <= 10).all()
        # A different frame whenever the video has one within reach; the single-frame video pairs with itself.
        single = a["video_id"].to_numpy() == "c"
        assert (gaps[~single] > 0).all() and (gaps[single] == 0).all()
        seen_gaps.update(gaps[~single].tolist())
    assert seen_gaps == {5, 10}


def test_same_frame_has_no_partner_and_an_epoch_covers_each_frame_once():
    index = _index()
    positions = np.arange(len(index))
    sampler = PairSampler(index, positions, Positives("same_frame"), batch_size=4, seed=0)
    assert sampler.steps_per_epoch == len(index) // 4
    batches = [sampler.batch(s) for s in range(sampler.steps_per_epoch)]
    assert all(b is None for _, b in batches)
    used = np.concatenate([a for a, _ in batches])
    assert len(np.unique(used)) == len(used) == sampler.steps_per_epoch * 4


def test_batches_are_a_function_of_seed_and_step():
    index = _index()
    positions = np.arange(len(index))
    one = PairSampler(index, positions, Positives("temporal", 5), batch_size=4, seed=7)
    two = PairSampler(index, positions, Positives("temporal", 5), batch_size=4, seed=7)
    # Asking in another order (as a resumed run does) gives the same batches.
    later = [two.batch(s) for s in (9, 3, 0)]
    for s, (a, p) in zip((9, 3, 0), later, strict=True):
        a1, p1 = one.batch(s)
        assert np.array_equal(a, a1) and np.array_equal(p, p1)
    other = PairSampler(index, positions, Positives("temporal", 5), batch_size=4, seed=8)
    assert not np.array_equal(other.batch(0)[0], one.batch(0)[0])
    # Consecutive epochs are shuffled differently.
    spe = one.steps_per_epoch
    assert not np.array_equal(one.batch(0)[0], one.batch(spe)[0])


def test_ranks_split_the_global_batch():
    index = _index()
    positions = np.arange(len(index))
    ranks = [PairSampler(index, positions, Positives("same_frame"), 3, seed=0, rank=r, world=2) for r in (0, 1)]
    a0, a1 = ranks[0].batch(0)[0], ranks[1].batch(0)[0]
    assert not set(a0) & set(a1)


def test_subset_positions_only_and_pool_smaller_than_batch():
    index = _index()
    subset = np.arange(0, len(index), 2)
    sampler = PairSampler(index, subset, Positives("temporal", 50), batch_size=3, seed=0)
    for step in range(sampler.steps_per_epoch):
        a, p = sampler.batch(step)
        assert set(a) <= set(subset) and set(p) <= set(subset)
    with pytest.raises(UserError, match="fewer than one global batch"):
        PairSampler(index, subset[:2], Positives("same_frame"), batch_size=3, seed=0)
