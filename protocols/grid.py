"""The downstream grid: inits × protocols × label fractions × (pretraining seed, seed) on one track,
as runner jobs.

Runs are nested: an SSL method is pretrained once per pretraining seed of the protocol, and each of
its checkpoints is evaluated on the protocol's downstream seeds. A job (pretraining seed p, seed s)
draws its label subset, head and data order from both (`downstream_seed`), and every init is
evaluated on the same subsets: the baselines too, `random` with its own network per p (weights
drawn from a stream of p, BatchNorm statistics estimated on the pool) and `imagenet` with the same
weights for every p. So comparisons are paired job by job, and the pretraining runs are the
independent replicates the statistics are computed over.

A job's key is the sha256 of everything that determines its result (protocols.keys): the protocol
(file hash + the preset's overrides of how a job runs), the init (name + checkpoint hash), the
dataset fingerprints, the track, the fraction and the two seeds.
"""
from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmark.data.cache import FrameCache
from benchmark.errors import UserError
from benchmark.kill_points import kill_point
from benchmark.pretrain.config import EARLIER_CPU_MEMORY_FORMAT
from benchmark.provenance import provenance
from benchmark.runner import Job
from leaderboard.results import RANDOM_START, ablation_record, build_record, init_start, result_path
from protocols import keys
from protocols.spec import ProtocolSpec

BASELINES = ("imagenet", "random")
# Protocols whose result is a function of the label subset alone (no seed enters their fit).
DETERMINISTIC = ("linear_probe", "knn")
# Named datasets keep their name in a track id; generic formats (a folder of videos, ...) add the
# folder's name so two different folders make two tracks.
_NAMED_DATASETS = ("synthetic", "echonet", "fetal_planes_db")


def downstream_seed(pretrain_seed: int, seed: int) -> int:
    """The one integer seed of job (pretraining seed, seed): its label subset, head, data order and
    augmentation. Distinct pairs give independent streams (numpy's SeedSequence)."""
    import numpy as np

    return int(np.random.SeedSequence([int(pretrain_seed), int(seed)]).generate_state(1)[0])


def job_seeds(protocol: ProtocolSpec, fraction: float) -> list[int]:
    """The downstream seeds a protocol runs at `fraction`. The linear probe and the k-NN are
    deterministic given their label subset, and at 100 % every seed has the same subset: one run, not
    copies of it."""
    if protocol.name in DETERMINISTIC and fraction >= 1.0:
        return protocol.seeds[:1]
    return protocol.seeds


def dataset_name(spec: str) -> str:
    """A dataset's part of a track id: a named dataset's name (`synthetic`, `fetal_planes_db`); a generic
    format's kind and its folder's name or its file's stem, never an extension (`videos-us_videos`,
    `csv-fpdb` for `csv:/data/fpdb.csv`), so two different folders make two tracks; a folder named as its
    format only the format (`african_fetal_planes` for `african_fetal_planes:~/data/african_fetal_planes`)."""
    kind, _, path = spec.partition(":")
    if kind in _NAMED_DATASETS or not path:
        return kind
    where = Path(path.rstrip("/"))
    base = (where.stem if where.suffix and not where.is_dir() else where.name) or "data"
    base = re.sub(r'[^A-Za-z0-9_-]+', '_', base).strip('_-') or 'data'
    # A folder named after its format (as `sslbench data download` lays them out) says nothing more.
    return kind if base == kind else f"{kind}-{base}"


_TRACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class Track:
    id: str
    pretrain_dataset: str
    downstream_dataset: str
    backbone: str
    resolution: int
    preset: str
    # The networks' layout on a CPU (benchmark.device.channels_last), from the preset. It changes results
    # in their last bits, so it is in the record (and the job keys) unless it is `contiguous`, the layout
    # of every track made before the setting existed: their records and keys stay as they were.
    cpu_memory_format: str = EARLIER_CPU_MEMORY_FORMAT

    def record(self) -> dict:
        return {"id": self.id, "pretrain_dataset": self.pretrain_dataset,
                "downstream_dataset": self.downstream_dataset, "backbone": self.backbone,
                "resolution": self.resolution, "preset": self.preset,
                **({"cpu_memory_format": self.cpu_memory_format}
                   if self.cpu_memory_format != EARLIER_CPU_MEMORY_FORMAT else {})}


def make_track(pretrain_spec: str, downstream_spec: str, backbone: str, resolution: int, preset: str,
               name: str | None = None, cpu_memory_format: str = EARLIER_CPU_MEMORY_FORMAT) -> Track:
    """The track of this data, backbone, resolution and preset; its id is `name` when given (it names
    the results folder, so it must be a plain folder name), else made from them."""
    pre, down = dataset_name(pretrain_spec), dataset_name(downstream_spec)
    data = pre if pre == down else f"{pre}+{down}"
    preset_id = Path(preset).stem if preset.endswith(".toml") else preset
    if name is not None and not _TRACK_NAME.fullmatch(name):
        raise UserError(f"--track {name!r}: a track name is a folder name of letters, digits and _ . + - "
                        "(starting with a letter or digit)")
    track_id = name or f"{data}-{backbone}-{resolution}px-{preset_id}"
    return Track(id=track_id, pretrain_dataset=pretrain_spec,
                 downstream_dataset=downstream_spec, backbone=backbone, resolution=resolution,
                 preset=preset_id, cpu_memory_format=cpu_memory_format)


@dataclass
class Init:
    """What a downstream job starts from: an SSL checkpoint or a baseline."""

    name: str
    kind: str  # "ssl" | "baseline"
    backbone: str
    pretrain_seed: int
    family: str | None = None
    checkpoint: Path | None = None  # None for imagenet: the backbone's ImageNet weights
    checkpoint_hash: str | None = None
    pretrain: dict | None = None
    pretrain_fingerprint: str | None = None

    @property
    def identity(self) -> str:
        """Identifies the encoder weights (feature cache and job keys)."""
        return keys.init_identity(self.name, self.checkpoint_hash, self.backbone)

    def record(self) -> dict:
        # A continued init records its start (its name says it too; `sslbench validate` checks they agree);
        # a from-random one records nothing more than before.
        start = init_start(self.name)
        return {"name": self.name, "kind": self.kind, "family": self.family,
                **({"start": start} if start != RANDOM_START else {}),
                "checkpoint_hash": self.checkpoint_hash, "pretrain": self.pretrain}

    def build_encoder(self):
        """A fresh encoder with this init's weights."""
        if self.checkpoint is not None:
            from benchmark.checkpoint import load_encoder

            encoder, _meta = load_encoder(self.checkpoint)
            return encoder
        from benchmark.backbones import build_backbone

        return build_backbone(self.backbone, init=self.name)


def imagenet_init(backbone: str, pretrain_seed: int) -> Init:
    """The ImageNet baseline in the block of pretraining seed `pretrain_seed`: the same weights in every
    block, evaluated on that block's label subsets (so it pairs with the SSL runs of that seed)."""
    return Init(name="imagenet", kind="baseline", backbone=backbone, pretrain_seed=pretrain_seed)


def checkpoint_init(name: str, checkpoint: Path, pretrain_seed: int, kind: str = "ssl",
                    family: str | None = None) -> Init:
    """The init of an encoder checkpoint (benchmark.checkpoint format): an SSL run, or the `random`
    baseline of one pretraining seed. Its metadata says how it was made."""
    from benchmark.checkpoint import checkpoint_identity, load_encoder

    encoder, meta = load_encoder(Path(checkpoint))  # validates the file (corrupt → UserError)
    pretrain = {k: v for k, v in meta.items() if k != "weights_sha256"}
    return Init(name=name, kind=kind, backbone=encoder.name, pretrain_seed=pretrain_seed, family=family,
                checkpoint=Path(checkpoint), checkpoint_hash=checkpoint_identity(Path(checkpoint)), pretrain=pretrain,
                pretrain_fingerprint=meta.get("data_fingerprint"))


@dataclass
class GridJob:
    init: Init
    protocol: ProtocolSpec
    fraction: float
    seed: int
    track: Track
    fingerprints: dict[str, str]  # {"downstream": ..., "pretrain": ... (inits made on the pool)}
    output: Path
    # Files the caches behind the fingerprints left out (--on-error skip), per role: provenance only.
    skipped_files: dict[str, int] = field(default_factory=dict)
    # The data card of each of those caches (FrameCache.card), per role: provenance only.
    data_cards: dict[str, dict] = field(default_factory=dict)
    # Names a fine-tune job's resumable state when its key alone does not tell it from another job's
    # (the folds of the cross-scanner protocol share the main grid's evaluation keys).
    state_key: str | None = None
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = job_key(self.init, self.protocol, self.fraction, self.seed, self.track, self.fingerprints)

    @property
    def pretrain_seed(self) -> int:
        return self.init.pretrain_seed

    @property
    def subset_seed(self) -> int:
        return downstream_seed(self.pretrain_seed, self.seed)

    @property
    def label(self) -> str:
        return (f"{self.init.name} {self.protocol.name} {self.fraction * 100:g}% "
                f"pretrain-seed{self.pretrain_seed} seed{self.seed}")


def job_key(init: Init, protocol: ProtocolSpec, fraction: float, seed: int, track: Track,
            fingerprints: dict[str, str]) -> str:
    return keys.job_key(protocol.key, init.name, init.identity, fingerprints, track.record(), fraction,
                        init.pretrain_seed, seed)


def skipped_files(cache: FrameCache | None) -> int:
    """How many files the cache's build left out (--on-error skip)."""
    return int(cache.meta.get("skipped", 0)) if cache is not None else 0


def build_grid(inits: list[Init], protocols: list[ProtocolSpec], track: Track, downstream: FrameCache,
               results_dir: Path, pool: FrameCache | None = None) -> list[GridJob]:
    """Every (init, protocol, fraction, seed) whose pretraining seed the protocol runs, in a fixed
    order (shards depend on it). `pool`: the pretraining cache, whose skipped files and data card the
    results of inits made on it record."""
    jobs = []
    cards = {"downstream": downstream.card(), "pretrain": pool.card() if pool is not None else None}
    for init in inits:
        fps = {"downstream": downstream.fingerprint}
        skipped = {"downstream": skipped_files(downstream)}
        data = {"downstream": cards["downstream"]}
        if init.pretrain_fingerprint:
            fps["pretrain"] = init.pretrain_fingerprint
            if pool is not None and init.pretrain_fingerprint == pool.fingerprint:
                skipped["pretrain"] = skipped_files(pool)
                data["pretrain"] = cards["pretrain"]
        for spec in protocols:
            if init.pretrain_seed not in spec.pretrain_seeds:
                continue
            for fraction in spec.fractions:
                for seed in job_seeds(spec, fraction):
                    jobs.append(GridJob(init=init, protocol=spec, fraction=fraction, seed=seed, track=track,
                                        fingerprints=fps, skipped_files=skipped, data_cards=data,
                                        output=result_path(results_dir, track.id, init.name, spec.name,
                                                           fraction, init.pretrain_seed, seed)))
    return jobs


def job_encoder(job: GridJob, device):
    """A fresh encoder of the job's init, in its track's layout on `device` (benchmark.device)."""
    import torch

    from benchmark.device import channels_last

    encoder = job.init.build_encoder()
    if channels_last(device, job.track.cpu_memory_format):
        encoder = encoder.to(memory_format=torch.channels_last)
    return encoder


def runner_jobs(grid: list[GridJob], downstream: FrameCache, run_dir: Path, progress: bool = True,
                command: str | None = None, extra_tests: tuple[str, ...] = ()) -> list[Job]:
    """Wrap grid jobs for benchmark.runner: each produces its validated result record. `extra_tests`:
    further splits of `downstream` that every protocol scores with the model it chose on validation
    (protocols.cross_scanner: the training scanners' own test images)."""
    from benchmark import determinism
    from benchmark.device import default_device, device_name

    device = default_device()
    name = device_name(device)
    arithmetic = determinism.configure(device.type)
    features: dict[str, object] = {}

    def probe_features(job: GridJob):
        from protocols.linear_probe import cached_features

        # The features of one init's weights, once per layout (the two agree to rounding only).
        ident = job.init.identity + ("" if job.track.cpu_memory_format == EARLIER_CPU_MEMORY_FORMAT
                                     else f"-{job.track.cpu_memory_format}")
        if ident not in features:
            def make():
                kill_point("features")
                return job_encoder(job, device)

            features[ident] = cached_features(make, ident, downstream, run_dir,
                                              job.protocol.settings["features"]["batch_size"], device,
                                              progress=progress)
        return features[ident]

    def producer(job: GridJob) -> Callable[[], dict]:
        def produce() -> dict:
            start = time.perf_counter()
            if job.protocol.name == "linear_probe":
                from protocols.linear_probe import run_probe

                out = run_probe(probe_features(job), downstream, job.protocol, job.fraction, job.subset_seed, device,
                                extra_tests)
            elif job.protocol.name == "knn":
                from protocols.knn import run_knn

                out = run_knn(probe_features(job), downstream, job.protocol, job.fraction, job.subset_seed, device,
                              extra_tests)
            else:
                from protocols.finetune import run_finetune

                if progress:
                    print(f"fine-tuning: {job.label}", file=sys.stderr, flush=True)
                kill_point("finetune")
                out = run_finetune(partial(job_encoder, job, device), downstream, job.protocol, job.fraction, job.subset_seed,
                                   state_path=_state_path(run_dir, job), device=device, progress=progress,
                                   extra_tests=extra_tests)
            if job.protocol.overrides:
                out["train"]["protocol_overrides"] = job.protocol.overrides
            return build_record(
                key=job.key, track=job.track.record(), protocol=job.protocol.record(), init=job.init.record(),
                fraction=job.fraction, pretrain_seed=job.pretrain_seed, seed=job.seed,
                class_names=downstream.class_names, metrics=out["metrics"], train=out["train"],
                provenance={**provenance(dataset_fingerprints=job.fingerprints, device=name,
                                         gpu=device.type == "cuda", wall_time_s=time.perf_counter() - start,
                                         command=command), **arithmetic,
                            **({"skipped_files": job.skipped_files} if job.skipped_files else {}),
                            **({"data": job.data_cards} if job.data_cards else {})})

        return produce

    def cleanup(job: GridJob) -> Callable[[], None]:
        return lambda: _state_path(run_dir, job).unlink(missing_ok=True)

    return [Job(key=j.key, output=j.output, produce=producer(j), label=j.label, cleanup=cleanup(j))
            for j in grid]


def as_ablation(job: Job, key: str, protocol: ProtocolSpec, label: str, **varied: dict) -> Job:
    """An evaluation job re-keyed as a run of the ablation `protocol`: its record carries the ablation's
    key and protocol and what the ablation varied (`leaderboard.results.ablation_record`)."""
    def produce() -> dict:
        return ablation_record(job.produce(), key=key, protocol=protocol.record(), **varied)

    return Job(key=key, output=job.output, produce=produce, label=label, cleanup=job.cleanup)


def _state_path(run_dir: Path, job: GridJob) -> Path:
    return Path(run_dir) / "finetune" / f"{(job.state_key or job.key)[:32]}.pt"
