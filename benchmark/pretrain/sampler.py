"""Which cache rows make up each training batch: a pure function of (seed, step).

`same_frame` pairs a frame with itself (two augmentations of one frame, the reference paper's
positive pair); `temporal:K` pairs it with another frame of the same video at most K frame
numbers away (by the cache's `frame_idx`), the video-aware positive pair. Because every batch is
derived from (seed, step) alone, a run resumed at step s sees exactly the batches an
uninterrupted run would have seen from s on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from benchmark.errors import UserError

if TYPE_CHECKING:
    from benchmark.data.cache import FrameCache


@dataclass(frozen=True)
class Positives:
    mode: str  # "same_frame" | "temporal"
    max_gap: int = 0

    def __str__(self) -> str:
        return self.mode if self.mode == "same_frame" else f"temporal:{self.max_gap}"


def parse_positives(text: str) -> Positives:
    text = str(text).strip()
    if text == "same_frame":
        return Positives("same_frame")
    mode, sep, k = text.partition(":")
    if mode == "temporal" and sep:
        try:
            gap = int(k)
        except ValueError:
            gap = -1
        if gap >= 1:
            return Positives("temporal", gap)
    raise UserError(f"--positives must be `same_frame` or `temporal:K` with K >= 1 frames, got {text!r}")


class PairSampler:
    """Row positions of each step's anchors and their positives, for one rank of `world` ranks."""

    def __init__(self, index: pd.DataFrame, positions: np.ndarray, positives: Positives, batch_size: int,
                 seed: int, rank: int = 0, world: int = 1):
        positions = np.asarray(positions, dtype=np.int64)
        global_batch = batch_size * world
        if len(positions) < global_batch:
            raise UserError(f"the pretraining pool has {len(positions)} frames, fewer than one global batch "
                            f"({batch_size} × {world} devices); lower --batch-size or use more data")
        self.positions = positions
        self.positives = positives
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world = world
        self.steps_per_epoch = len(positions) // global_batch  # the incomplete last batch is dropped
        self._cached_epoch = -1
        self._cached_order = np.empty(0, np.int64)
        if positives.mode == "temporal":
            self._build_temporal(index)

    def _build_temporal(self, index: pd.DataFrame) -> None:
        rows = index.iloc[self.positions]
        video = pd.factorize(rows["video_id"].astype(str))[0].astype(np.int64)
        frame = rows["frame_idx"].to_numpy(np.int64)
        order = np.lexsort((frame, video))
        self._sorted_pos = self.positions[order]
        sv, sf = video[order], frame[order]
        # Window of each anchor in the sorted table: same video, |Δframe| <= K. Videos are made
        # disjoint on one number line by spacing them further apart than any frame gap.
        span = int(sf.max() - sf.min()) + 2 * self.positives.max_gap + 2 if len(sf) else 1
        key = sv * span + (sf - sf.min() if len(sf) else 0)
        self._lo = np.searchsorted(key, key - self.positives.max_gap, side="left")
        self._hi = np.searchsorted(key, key + self.positives.max_gap, side="right")
        self._rank_in_sorted = np.empty(len(order), np.int64)
        self._rank_in_sorted[order] = np.arange(len(order))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._cached_epoch != epoch:  # one permutation per epoch, not per step
            self._cached_order = np.random.default_rng([self.seed, epoch]).permutation(len(self.positions))
            self._cached_epoch = epoch
        return self._cached_order

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(anchors, positives) as cache row positions; positives is None for same_frame."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        start = (k * self.world + self.rank) * self.batch_size
        chosen = order[start:start + self.batch_size]
        anchors = self.positions[chosen]
        if self.positives.mode == "same_frame":
            return anchors, None
        rng = np.random.default_rng([self.seed, epoch, k, self.rank, 1])
        at = self._rank_in_sorted[chosen]
        lo, hi = self._lo[at], self._hi[at]
        # Uniform over the window without the anchor itself (when the window has anyone else).
        width = hi - lo - 1
        pick = lo + np.floor(rng.random(len(at)) * np.maximum(width, 1)).astype(np.int64)
        pick = np.where(width > 0, pick + (pick >= at), at)
        return anchors, self._sorted_pos[pick]


def pretraining_positions(pool: FrameCache, limit_frames: int | None = None,
                          frame_positions: np.ndarray | None = None) -> np.ndarray:
    """Cache rows to pretrain on: `frame_positions`, else the pool's `pretrain` split (never a
    downstream test frame), thinned evenly to `limit_frames` (a run's `PretrainConfig.limit_frames`)."""
    if frame_positions is not None:
        positions = np.unique(np.asarray(frame_positions, dtype=np.int64))
        if len(positions) and (positions[0] < 0 or positions[-1] >= len(pool.index)):
            raise UserError(f"frame_positions must be row numbers of the pool (0..{len(pool.index) - 1})")
    else:
        positions = pool.split_positions("pretrain")
        if len(positions) == 0:
            raise UserError(f"the cache {pool.root} has no frames in the 'pretrain' split; pretrain on a "
                            "dataset prepared with role pretrain")
    if limit_frames is not None and limit_frames < len(positions):
        positions = positions[np.unique(np.linspace(0, len(positions) - 1, limit_frames).round().astype(int))]
    return positions
