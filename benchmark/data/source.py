"""What every data source hands to the frame cache.

A source (the simulator, a folder of videos, DICOM cines, ...) yields `Clip`s: uint8 grayscale
frames already resized to the cache resolution, with their video/subject ids and, when known,
their labels, split and scanner (the machine that acquired them: the cross-scanner protocol holds
one out). A file it cannot read is reported as a `Skipped` item (the cache
builder decides, per `--on-error`, whether that stops the build or goes in the skip report).
Sources never write files; the cache builder does.
"""
from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

ROLES = ("pretrain", "downstream")
SPLITS = ("pretrain", "train", "val", "test")
UNLABELLED = -1


@dataclass
class Clip:
    """One video (T frames) or one image (T = 1), ready for the cache."""

    frames: np.ndarray  # T×H×W uint8, H = W = the cache resolution
    video_id: str
    subject_id: str
    labels: np.ndarray | None = None  # (T,) int class indices into Source.class_names(), or None
    split: str | None = None  # one of SPLITS when the source dictates it; None = assign later
    frame_idx: np.ndarray | None = None  # (T,) frame numbers in the original clip; default 0..T-1
    path: str = ""  # the file it came from, for reports
    # False when the source has no subject id for this clip and uses the file itself as its subject
    # (an image folder of stills from unknown patients): splits of such clips cannot be subject-disjoint.
    subject_known: bool = True
    scanner: str = ""  # the machine that acquired it, where the source knows it ("" = unknown)

    def __post_init__(self) -> None:
        if self.frames.dtype != np.uint8 or self.frames.ndim != 3:
            raise ValueError(f"{self.video_id}: frames must be T×H×W uint8, got {self.frames.dtype} "
                             f"{self.frames.shape}")
        t = self.frames.shape[0]
        if self.labels is not None and len(self.labels) != t:
            raise ValueError(f"{self.video_id}: {len(self.labels)} labels for {t} frames")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"{self.video_id}: split {self.split!r} is not one of {SPLITS}")


@dataclass
class Skipped:
    """A file the source could not use, and why."""

    path: str
    reason: str


@dataclass
class Source(abc.ABC):
    """Base class of every data source. Subclasses are dataclasses whose fields are their settings."""

    resolution: int = 128
    # Filled by the spec parser: the text the user typed (for messages and provenance).
    spec: str = field(default="", compare=False)

    #: "pretrain", "downstream" or both: what this source can feed.
    roles: tuple[str, ...] = ("pretrain",)

    @abc.abstractmethod
    def fingerprint_parts(self, role: str) -> dict:
        """Everything that identifies the cache content for `role`: settings + the input files'
        identity (a single label/manifest file: its content digest; the files of a folder: path,
        size, mtime). JSON-serialisable. A change here rebuilds the cache."""

    @abc.abstractmethod
    def class_names(self, role: str) -> list[str]:
        """Class names (index = label). Empty for unlabelled sources."""

    @abc.abstractmethod
    def items(self, role: str) -> Iterator[Clip | Skipped]:
        """Yield the clips for `role` (decoding in parallel where it pays), and a `Skipped` for
        each file that cannot be used. Deterministic order."""

    def describe(self) -> str:
        return self.spec or type(self).__name__
