"""The in-domain pretraining pool: the downstream data's own training images, unlabelled.

`--dataset downstream:train` (or a preset's `[data.pretrain] spec = "downstream:train"`) pretrains on the
images of the downstream *training* subjects, after the subject-disjoint split (benchmark.data.splits) has
carved out the validation subjects: never an image of a validation or test subject, and no label. The pool is
made from the downstream frame cache itself, so it follows that cache's split exactly (a file the cache
left out is not in the pool either), and holds copies of those frames only, so no other image is within
its reach. Its fingerprint is that of the downstream cache and the split, and its spec names it, so its
track (`downstream-train+<downstream>-...`) never mixes with a track pretrained on another pool.

What it does not hold out: the cross-scanner protocol's held-out site. A model pretrained on this pool has
seen the held-out site's *training* patients' images, unlabelled (never its test patients', never a label),
so its cross-scanner scores measure robustness to a site whose unlabelled images were in pretraining.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from benchmark.data.cache import FrameCache
from benchmark.data.source import UNLABELLED
from benchmark.errors import UserError

SPEC = "downstream:train"
KIND = "downstream"
SPLIT = "train"


def is_in_domain(spec: str | None) -> bool:
    return spec is not None and spec.strip() == SPEC


def pool_fingerprint(downstream_fingerprint: str) -> str:
    payload = {"pool": SPEC, "split": SPLIT, "downstream": downstream_fingerprint}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def train_split_pool(downstream: FrameCache) -> FrameCache:
    """The pretraining pool of `downstream`'s train split: its frames (copied), unlabelled, split `pretrain`."""
    rows = downstream.split_positions(SPLIT)
    if len(rows) == 0:
        raise UserError(f"--dataset {SPEC}: the downstream data {downstream.meta.get('spec', downstream.root)} has no "
                        "images in its train split to pretrain on")
    index = downstream.index.iloc[rows].reset_index(drop=True).assign(label=UNLABELLED, split="pretrain")
    frames = np.ascontiguousarray(downstream.frames[rows])
    frames.flags.writeable = False
    meta = {"format": downstream.meta.get("format"), "fingerprint": pool_fingerprint(downstream.fingerprint),
            "kind": KIND, "spec": SPEC, "role": "pretrain", "shape": list(frames.shape), "class_names": [],
            "settings": {"downstream_fingerprint": downstream.fingerprint, "split": SPLIT,
                         "downstream_spec": downstream.meta.get("spec", "")},
            "skipped": 0, "videos": int(index["video_id"].nunique()),
            "subjects": int(index["subject_id"].nunique()), "clips": int(index["video_id"].nunique()),
            "clips_without_subject": 0}
    return FrameCache(root=downstream.root, frames=frames, index=index, class_names=[], meta=meta)
