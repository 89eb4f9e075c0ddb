"""The downstream grid: inits × protocols × label fractions × seeds on one track, as runner jobs.

A job's key is the sha256 of everything that determines its result: the protocol (file hash +
the preset's overrides), the init (name + checkpoint hash), the dataset fingerprints, the track,
the fraction and the seed. Inits: every SSL method's checkpoint, plus the baselines `imagenet` (the
backbone's ImageNet weights) and `random`.
"""
from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.data.cache import FrameCache
from benchmark.kill_points import kill_point
from benchmark.results import provenance, result_path
from benchmark.runner import Job
from protocols.spec import ProtocolSpec, canonical_hash

BASELINES = ("imagenet", "random")
# Named datasets keep their name in a track id; generic formats (a folder of videos, ...) add the
# folder's name so two different folders make two tracks.
_NAMED_DATASETS = ("synthetic", "echonet", "fetal_planes_db")
# The random baseline's probe features come from one fixed draw, so they are extracted once;
# its fine-tunes draw the random weights from the job's seed.
RANDOM_PROBE_SEED = 0


def dataset_name(spec: str) -> str:
    kind, _, path = spec.partition(":")
    if kind in _NAMED_DATASETS or not path:
        return kind
    base = Path(path.rstrip("/")).name or "data"
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_.]+', '_', base)}"


@dataclass(frozen=True)
class Track:
    id: str
    pretrain_dataset: str
    downstream_dataset: str
    backbone: str
    resolution: int
    preset: str

    def record(self) -> dict:
        return {"id": self.id, "pretrain_dataset": self.pretrain_dataset,
                "downstream_dataset": self.downstream_dataset, "backbone": self.backbone,
                "resolution": self.resolution, "preset": self.preset}


def make_track(pretrain_spec: str, downstream_spec: str, backbone: str, resolution: int, preset: str) -> Track:
    pre, down = dataset_name(pretrain_spec), dataset_name(downstream_spec)
    data = pre if pre == down else f"{pre}+{down}"
    preset_id = Path(preset).stem if preset.endswith(".toml") else preset
    return Track(id=f"{data}-{backbone}-{resolution}px-{preset_id}", pretrain_dataset=pretrain_spec,
                 downstream_dataset=downstream_spec, backbone=backbone, resolution=resolution,
                 preset=preset_id)


@dataclass
class Init:
    """What a downstream job starts from: an SSL checkpoint or a baseline."""

    name: str
    kind: str  # "ssl" | "baseline"
    backbone: str
    family: str | None = None
    checkpoint: Path | None = None
    checkpoint_hash: str | None = None
    pretrain: dict | None = None
    pretrain_fingerprint: str | None = None

    @property
    def identity(self) -> str:
        """Identifies the encoder weights (feature cache and job keys)."""
        if self.kind == "ssl":
            return f"ssl:{self.checkpoint_hash}"
        return f"{self.name}:{self.backbone}"

    def record(self) -> dict:
        return {"name": self.name, "kind": self.kind, "family": self.family,
                "checkpoint_hash": self.checkpoint_hash, "pretrain": self.pretrain}

    def build_encoder(self):
        """A fresh encoder with this init's weights (random weights come from torch's current seed)."""
        if self.kind == "ssl":
            from benchmark.checkpoint import load_encoder

            encoder, _meta = load_encoder(self.checkpoint)
            return encoder
        from benchmark.backbones import build_backbone

        return build_backbone(self.backbone, init=self.name)


def baseline_init(name: str, backbone: str) -> Init:
    if name not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")
    return Init(name=name, kind="baseline", backbone=backbone)


def ssl_init(method: str, checkpoint: Path, family: str | None = None) -> Init:
    """The init of a pretrained checkpoint (benchmark.checkpoint format); its metadata says how it
    was pretrained."""
    from benchmark.checkpoint import file_sha256, load_encoder

    encoder, meta = load_encoder(Path(checkpoint))  # validates the file (corrupt → UserError)
    pretrain = {k: v for k, v in meta.items() if k not in ("sha256",)}
    return Init(name=method, kind="ssl", backbone=encoder.name, family=family, checkpoint=Path(checkpoint),
                checkpoint_hash=file_sha256(Path(checkpoint)), pretrain=pretrain,
                pretrain_fingerprint=meta.get("data_fingerprint") or meta.get("fingerprint"))


@dataclass
class GridJob:
    init: Init
    protocol: ProtocolSpec
    fraction: float
    seed: int
    track: Track
    fingerprints: dict[str, str]  # {"downstream": ..., "pretrain": ... (SSL inits)}
    output: Path
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = job_key(self.init, self.protocol, self.fraction, self.seed, self.track, self.fingerprints)

    @property
    def label(self) -> str:
        return f"{self.init.name} {self.protocol.name} {self.fraction * 100:g}% seed{self.seed}"


def job_key(init: Init, protocol: ProtocolSpec, fraction: float, seed: int, track: Track,
            fingerprints: dict[str, str]) -> str:
    return canonical_hash({"protocol": protocol.key, "init": {"name": init.name, "identity": init.identity},
                           "data": fingerprints, "track": track.record(), "fraction": float(fraction),
                           "seed": int(seed)})


def build_grid(inits: list[Init], protocols: list[ProtocolSpec], track: Track, downstream: FrameCache,
               results_dir: Path, pretrain_fingerprint: str | None = None) -> list[GridJob]:
    """Every (init, protocol, fraction, seed), in a fixed order (shards depend on it)."""
    jobs = []
    for init in inits:
        fps = {"downstream": downstream.fingerprint}
        if init.kind == "ssl":
            fps["pretrain"] = init.pretrain_fingerprint or pretrain_fingerprint or "unknown"
        for spec in protocols:
            for fraction in spec.fractions:
                for seed in spec.seeds:
                    jobs.append(GridJob(init=init, protocol=spec, fraction=fraction, seed=seed, track=track,
                                        fingerprints=fps,
                                        output=result_path(results_dir, track.id, init.name, spec.name,
                                                           fraction, seed)))
    return jobs


def runner_jobs(grid: list[GridJob], downstream: FrameCache, run_dir: Path, progress: bool = True,
                command: str | None = None) -> list[Job]:
    """Wrap grid jobs for benchmark.runner: each produces its validated result record."""
    import torch

    from protocols.linear_probe import default_device

    device = default_device()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    features: dict[str, object] = {}

    def probe_features(job: GridJob):
        from protocols.linear_probe import cached_features

        ident = job.init.identity + (f":seed{RANDOM_PROBE_SEED}" if job.init.name == "random" else "")
        if ident not in features:
            def make():
                kill_point("features")
                torch.manual_seed(RANDOM_PROBE_SEED)
                return job.init.build_encoder()

            features[ident] = cached_features(make, ident, downstream, run_dir,
                                              job.protocol.settings["features"]["batch_size"], device,
                                              progress=progress)
        return features[ident]

    def producer(job: GridJob) -> Callable[[], dict]:
        def produce() -> dict:
            start = time.perf_counter()
            if job.protocol.name == "linear_probe":
                from protocols.linear_probe import run_probe

                out = run_probe(probe_features(job), downstream, job.protocol, job.fraction, job.seed, device)
            else:
                from protocols.finetune import run_finetune

                if progress:
                    print(f"fine-tuning: {job.label}", file=sys.stderr, flush=True)
                kill_point("finetune")
                out = run_finetune(job.init.build_encoder, downstream, job.protocol, job.fraction, job.seed,
                                   state_path=_state_path(run_dir, job), device=device, progress=progress)
            if job.protocol.overrides:
                out["train"]["protocol_overrides"] = job.protocol.overrides
            return {
                "schema_version": 1,
                "job": {"key": job.key, "init": job.init.name, "protocol": job.protocol.name,
                        "fraction": float(job.fraction), "seed": int(job.seed)},
                "track": job.track.record(),
                "protocol": job.protocol.record(),
                "init": job.init.record(),
                "class_names": list(downstream.class_names),
                "metrics": out["metrics"],
                "train": out["train"],
                "provenance": provenance(dataset_fingerprints=job.fingerprints, device=device_name,
                                         gpu=device.type == "cuda", wall_time_s=time.perf_counter() - start,
                                         command=command),
            }

        return produce

    def cleanup(job: GridJob) -> Callable[[], None]:
        return lambda: _state_path(run_dir, job).unlink(missing_ok=True)

    return [Job(key=j.key, output=j.output, produce=producer(j), label=j.label, cleanup=cleanup(j))
            for j in grid]


def _state_path(run_dir: Path, job: GridJob) -> Path:
    return Path(run_dir) / "finetune" / f"{job.key[:32]}.pt"


def _cpu_name() -> str:
    import os
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
