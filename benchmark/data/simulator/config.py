"""The simulator's knobs (the `-o key=value` settings of `--dataset synthetic`) and their checks."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from benchmark.data.simulator.scanners import MACHINES
from benchmark.errors import UserError

# Bump whenever the drawing or the rendering changes, so that caches built by an older version rebuild.
SIMULATOR_VERSION = 2

PLANES = ("4CH", "LVOT", "RVOT", "3VV", "3VT")
OTHER = "other"
# Anatomical level of each class on the caudal → cranial sweep; "other" is the upper abdomen below 4CH.
OTHER_LEVEL = -1


@dataclass
class SimulatorKnobs:
    """Every setting of the simulator. Defaults build in seconds at 128 px; presets override them."""

    seed: int = 0
    subjects: int = 24  # pretraining subjects
    videos_per_subject: int = 2
    frames_per_video: int = 64  # frames kept per video (after the stride)
    stride: int = 1  # keep every N-th generated frame
    motion: float = 1.0  # probe drift / rotation amplitude; 0 = still probe
    noise: float = 1.0  # noise and difficulty: clutter, blur, electronic noise, ambiguous levels
    sweep: float = 0.3  # probability that a pretraining clip sweeps through several levels
    fps: float = 30.0
    downstream_subjects: int = 60
    downstream_images_per_subject: int = 20
    include_other: bool = False  # a 6th class "other" (upper abdomen, no heart)
    # Simulated machines the downstream subjects are spread over (scanners.py); 1 = the generic mix.
    scanners: int = 1
    # Magnification: the thorax is drawn `zoom` times larger in the sector. Sonographers magnify the
    # image so that the heart fills a third to a half of it (ISUOG's cardiac screening guideline); at
    # 1.0 it fills about a fifth, which leaves the valves and great-vessel lumens a pixel or two at 64 px.
    zoom: float = 1.0

    def validate_knobs(self, resolution: int) -> None:
        _int("resolution", resolution, minimum=32, hint="at least 32 px so the heart's chambers show")
        _int("seed", self.seed, minimum=0)
        _int("subjects", self.subjects, minimum=1)
        _int("videos_per_subject", self.videos_per_subject, minimum=1)
        _int("frames_per_video", self.frames_per_video, minimum=1)
        _int("stride", self.stride, minimum=1)
        _int("downstream_subjects", self.downstream_subjects, minimum=3,
             hint="at least 3 so train/val/test can be subject-disjoint")
        _int("downstream_images_per_subject", self.downstream_images_per_subject, minimum=1)
        _int("scanners", self.scanners, minimum=1)
        if self.scanners > len(MACHINES):
            raise UserError(f"simulator knob scanners must be at most {len(MACHINES)} (the simulated machines: "
                            f"{', '.join(m.name for m in MACHINES)}), got {self.scanners}")
        if self.scanners > self.downstream_subjects:
            raise UserError(f"simulator knob scanners={self.scanners} needs at least as many downstream_subjects "
                            f"(got {self.downstream_subjects}): every machine images whole subjects")
        _real("motion", self.motion, 0.0, 5.0)
        _real("noise", self.noise, 0.0, 5.0)
        _real("sweep", self.sweep, 0.0, 1.0)
        _real("fps", self.fps, 5.0, 500.0)
        _real("zoom", self.zoom, 0.5, 3.0)
        if not isinstance(self.include_other, bool):
            raise UserError(f"simulator knob include_other must be true or false, got {self.include_other!r}")

    def class_names(self) -> list[str]:
        return list(PLANES) + ([OTHER] if self.include_other else [])


def _int(name: str, value, minimum: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError(f"simulator knob {name} must be an integer >= {minimum}, got {value!r}"
                        + (f" ({hint})" if hint else ""))


def _real(name: str, value, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        raise UserError(f"simulator knob {name} must be a number in [{low:g}, {high:g}], got {value!r}")
