"""The typed configuration of one pretraining run, and the key that names its checkpoint."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from benchmark.errors import UserError

# Bump when the engine changes what a given config produces (augmentation, sampling, schedule).
# 2: the ae target shares the augmented view's crop and flip. 3: budgets in optimiser steps, LARS with
# LARC clipping (timm), warm-up as a fraction of the run, BatchNorm statistics of the final encoder
# estimated on the clean pool, the method's resolved hyper-parameters in the key.
ENGINE_VERSION = 3
# Settings that change how fast a run goes, never what it produces: left out of the key.
_NOT_IN_KEY = ("compile",)
# The CPU memory layout of every run made before `cpu_memory_format` existed (benchmark.device). At this
# value the setting is left out of checkpoint keys, job keys and records, so those runs keep theirs.
EARLIER_CPU_MEMORY_FORMAT = "contiguous"
# Settings whose value named here is the one every run had before the setting existed: left out of the
# key at that value, so those runs keep their keys (and their checkpoints are found again).
_KEY_SINCE = {"cpu_memory_format": EARLIER_CPU_MEMORY_FORMAT}


@dataclass
class PretrainConfig:
    method: str
    backbone: str = "resnet18"
    init: str = "random"  # "imagenet" = start SSL from ImageNet weights
    resolution: int = 64  # view size in pixels (square)
    # The budget, in optimiser steps: the same compute for every method and any data size (epochs
    # would grow with the data). The pool is cycled in seeded permutations as often as needed.
    steps: int = 100
    batch_size: int | None = None  # per device; None → the method's default
    positives: str = "same_frame"  # or "temporal:K"
    hparams: dict = field(default_factory=dict)  # overrides of the method defaults
    augment: dict = field(default_factory=dict)  # overrides of the augmentation defaults
    precision: str = "auto"  # bf16-mixed on GPU, 32 on CPU
    compile: bool = False
    # The networks' memory layout on a CPU (benchmark.device.channels_last); on a GPU always channels_last.
    cpu_memory_format: str = "channels_last"
    devices: int | str = "auto"
    num_nodes: int = 1
    seed: int = 0
    limit_frames: int | None = None

    def key(self, data_fingerprint: str) -> str:
        """sha256 of everything that determines the checkpoint: the settings, the method's
        hyper-parameters as resolved (its defaults with the overrides: a changed default is a new
        checkpoint), the data and the engine version."""
        payload = {k: v for k, v in asdict(self).items()
                   if k not in _NOT_IN_KEY and _KEY_SINCE.get(k, object()) != v}
        payload["hparams"] = self.key_hparams()
        payload["data"] = data_fingerprint
        payload["engine"] = ENGINE_VERSION
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def resolved_hparams(self) -> dict:
        from methods.base import resolve_hparams
        from methods.registry import get_method

        return resolve_hparams(get_method(self.method), self.hparams)

    def key_hparams(self) -> dict:
        """The resolved hyper-parameters less those at the value they had before the method declared them
        (`SSLMethod.defaults_since`)."""
        from methods.registry import get_method

        since = get_method(self.method).defaults_since
        return {k: v for k, v in self.resolved_hparams().items() if k not in since or since[k] != v}

    @classmethod
    def from_dict(cls, values: dict) -> PretrainConfig:
        """Build from a preset's `[pretrain]` table (unknown keys are an error naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown pretraining setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def validate(self) -> PretrainConfig:
        from benchmark.pretrain.sampler import parse_positives

        if self.resolution < 8:
            raise UserError(f"resolution must be at least 8 pixels, got {self.resolution}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise UserError(f"steps (the pretraining budget in optimiser steps) must be an integer >= 1, "
                            f"got {self.steps!r}")
        if self.batch_size is not None and self.batch_size < 2:
            raise UserError(f"batch size must be >= 2 (SSL losses compare samples), got {self.batch_size}")
        if self.limit_frames is not None and self.limit_frames < 2:
            raise UserError(f"limit_frames must be >= 2, got {self.limit_frames}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.init not in ("random", "imagenet"):
            raise UserError(f"init must be 'random' or 'imagenet', got {self.init!r}")
        if self.precision not in ("auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true"):
            raise UserError(f"precision must be auto, 32, bf16-mixed or 16-mixed, got {self.precision!r}")
        from benchmark.device import CPU_MEMORY_FORMATS

        if self.cpu_memory_format not in CPU_MEMORY_FORMATS:
            raise UserError(f"cpu_memory_format must be one of {', '.join(CPU_MEMORY_FORMATS)}, "
                            f"got {self.cpu_memory_format!r}")
        parse_positives(self.positives)
        return self
