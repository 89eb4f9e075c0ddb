"""The `synthetic` data source: fetal echocardiography videos (pretraining) and labelled images
of other subjects (downstream), generated on the fly, deterministic in the seed."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields

import numpy as np

from benchmark.data.simulator import timeline
from benchmark.data.simulator.anatomy import SubjectAnatomy, draw_level, sample_subject
from benchmark.data.simulator.config import SIMULATOR_VERSION, SimulatorKnobs
from benchmark.data.simulator.render import Fan, FramePlan, Look, render_frames
from benchmark.data.simulator.scanners import GENERIC, scanner_of
from benchmark.data.source import Clip, Skipped, Source
from benchmark.data.sources.parallel import decode_all
from benchmark.data.spec import register_source
from benchmark.errors import UserError

# Separate RNG streams (and id spaces) for the two roles, so no downstream subject is a pretraining one.
_ROLE_STREAM = {"pretrain": 0, "downstream": 1}
_ID_PREFIX = {"pretrain": "p", "downstream": "d"}


@register_source("synthetic", needs_path=False)
@dataclass
class SyntheticSource(Source, SimulatorKnobs):
    """Built-in fetal heart ultrasound simulator (the default dataset)."""

    roles: tuple[str, ...] = ("pretrain", "downstream")
    workers: int = 0  # generator processes (0 = every core); not part of the content, so not fingerprinted

    def __post_init__(self) -> None:
        self.validate_knobs(self.resolution)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise UserError(f"-o workers must be 0 (every core) or a positive integer, got {self.workers!r}")

    def knobs(self) -> dict:
        names = [f.name for f in fields(SimulatorKnobs)] + ["resolution"]
        values = asdict(self)
        return {n: values[n] for n in names}

    def fingerprint_parts(self, role: str) -> dict:
        knobs = self.knobs()
        # `scanners` came after the first caches: at its default (or for pretraining, which it does not
        # touch) it stays out, so those caches and the results keyed by their fingerprints stay valid.
        if role == "pretrain" or knobs["scanners"] == 1:
            del knobs["scanners"]
        if knobs["zoom"] == 1.0:  # likewise `zoom`, at its default
            del knobs["zoom"]
        return {"simulator_version": SIMULATOR_VERSION, **knobs}

    def class_names(self, role: str) -> list[str]:
        return SimulatorKnobs.class_names(self)

    def subject_id(self, role: str, k: int) -> str:
        return f"{_ID_PREFIX[role]}{k:04d}"

    def subject(self, role: str, k: int) -> SubjectAnatomy:
        """Subject k's anatomy depends only on (seed, role, k), not on how many subjects there are."""
        return sample_subject(self._rng(role, k, 0))

    def _rng(self, role: str, k: int, *stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _ROLE_STREAM[role], k, *stream])

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        """Clips are generated in worker processes (one task per video, or per downstream subject)."""
        if role == "pretrain":
            tasks = [(self, k, v) for k in range(self.subjects) for v in range(self.videos_per_subject)]
            paths = [f"synthetic video {self.subject_id(role, k)}-v{v:02d}" for _, k, v in tasks]
            yield from decode_all(_video_task, tasks, paths, desc="simulating videos", workers=self.workers)
        elif role == "downstream":
            tasks = [(self, k) for k in range(self.downstream_subjects)]
            paths = [f"synthetic images of {self.subject_id(role, k)}" for _, k in tasks]
            for item in decode_all(_images_task, tasks, paths, desc="simulating images", workers=self.workers):
                yield from (item if isinstance(item, list) else [item])
        else:
            raise ValueError(f"unknown role {role!r}")

    def video(self, k: int, v: int) -> Clip:
        """Video v of pretraining subject k: one view or a sweep, a beating heart, a moving probe."""
        anat = self.subject("pretrain", k)
        rng = self._rng("pretrain", k, 1, v)
        frame_idx = np.arange(0, self.frames_per_video * self.stride, self.stride)
        times = frame_idx / self.fps
        lowest = timeline.lowest_level(self.include_other)
        levels = timeline.clip_levels(rng, times, self.sweep, lowest)
        contraction, systolic = timeline.heartbeat(rng, times)
        fan = timeline.sample_fan(rng)
        look = timeline.sample_look(rng, self.noise)
        pose = timeline.base_pose(rng, fan)
        move = timeline.probe_motion(rng, times, self.motion)
        t = len(times)
        frames = self._render(anat, levels, contraction, systolic, fan, look, rng,
                              center=pose["center"][None] + move["shift"],
                              scale=pose["scale"] * move["zoom"],
                              rotation=pose["rotation"] + move["rotation"],
                              mirror=np.full(t, pose["mirror"]),
                              gain=timeline.gain_curve(rng, times))
        sid = self.subject_id("pretrain", k)
        return Clip(frames=frames, video_id=f"{sid}-v{v:02d}", subject_id=sid,
                    labels=timeline.label_of(levels), frame_idx=frame_idx)

    def labelled_images(self, k: int) -> list[Clip]:
        """The labelled still images of downstream subject k, spread over the classes, each from its
        own probe position and cardiac phase, on the subject's scanner."""
        anat = self.subject("downstream", k)
        scanner = scanner_of(k, self.scanners)
        rng = self._rng("downstream", k, 2)
        n = self.downstream_images_per_subject
        lowest = timeline.lowest_level(self.include_other)
        planes = np.arange(lowest, timeline.TOP_LEVEL + 1)
        order = np.concatenate([rng.permutation(planes) for _ in range(-(-n // len(planes)))])[:n]
        # Not every image is taken exactly at the standard level: some lie towards a neighbour.
        jitter = 0.15 + 0.15 * min(self.noise, 2.0)
        levels = order + rng.uniform(-jitter, jitter, n)
        contraction, systolic = timeline.cardiac_state(rng.uniform(0, 1, n))
        fan = timeline.sample_fan(rng, scanner)
        look = timeline.sample_look(rng, self.noise, scanner)
        # A machine's fan may have its apex far above the image: the heart stays mid-image.
        offset = 0.0 if scanner is GENERIC else -(fan.apex_y + 0.035)
        poses = [timeline.base_pose(rng, fan, offset) for _ in range(n)]
        frames = self._render(anat, levels, contraction, systolic, fan, look, rng,
                              center=np.stack([p["center"] for p in poses]),
                              scale=np.array([p["scale"] for p in poses]),
                              rotation=np.array([p["rotation"] for p in poses]),
                              mirror=np.array([p["mirror"] for p in poses]),
                              gain=(rng.uniform(-7, 1, n) + scanner.gain_db).astype(np.float32))
        labels = timeline.label_of(levels)
        sid = self.subject_id("downstream", k)
        name = "" if scanner is GENERIC else scanner.name  # the generic mix is no machine
        return [Clip(frames=frames[i:i + 1], video_id=f"{sid}-i{i:03d}", subject_id=sid,
                     labels=labels[i:i + 1], frame_idx=np.array([i]), scanner=name) for i in range(n)]

    def _render(self, anat: SubjectAnatomy, levels: np.ndarray, contraction: np.ndarray,
                systolic: np.ndarray, fan: Fan, look: Look, rng: np.random.Generator, **pose) -> np.ndarray:
        """Draw each level the frames need (systolic and diastolic), blend per frame, render."""
        near, other, w_other = timeline.blend(levels, timeline.lowest_level(self.include_other))
        other = np.where(w_other > 0, other, near)
        needed = np.unique(np.concatenate([near, other]))
        size = self.resolution
        keys = np.stack([np.stack(draw_level(anat, int(lv), systole, size))
                         for lv in needed for systole in (True, False)])
        t = len(levels)
        weights = np.zeros((t, len(keys)), np.float32)
        rows = np.arange(t)
        for lv, w in ((near, 1 - w_other), (other, w_other)):
            slot = 2 * np.searchsorted(needed, lv)
            np.add.at(weights, (rows, slot), w * systolic)
            np.add.at(weights, (rows, slot + 1), w * (1 - systolic))
        plan = FramePlan(key_weights=weights, center=pose["center"], scale=pose["scale"] * self.zoom,
                         rotation=pose["rotation"], mirror=pose["mirror"], contraction=contraction,
                         gain=pose["gain"])
        a = anat.apex_angle
        apex = np.array([np.sin(a), np.cos(a)])
        centre = np.asarray(anat.heart_center)
        heart = (centre + 0.12 * anat.heart_scale * apex, centre - 0.3 * anat.heart_scale * apex,
                 0.3 * anat.heart_scale)
        return render_frames(keys, plan, heart, fan, look, self.resolution, rng)


def _video_task(task: tuple[SyntheticSource, int, int]) -> Clip:
    source, k, v = task
    return source.video(k, v)


def _images_task(task: tuple[SyntheticSource, int]) -> list[Clip]:
    source, k = task
    return source.labelled_images(k)
