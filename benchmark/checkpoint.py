"""Encoder checkpoints: one safetensors file holding the weights and, in its header, the metadata.

safetensors never unpickles, so a checkpoint from anywhere is safe to load; the backbone name in
the metadata is enough to rebuild the architecture.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from benchmark.backbones import Encoder, build_backbone
from benchmark.errors import UserError
from leaderboard.atomic import atomic_path

META_KEY = "sslbench"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def weights_sha256(tensors: dict) -> str:
    """sha256 of the weights alone (names, dtypes, shapes and bytes in name order): what identifies an
    encoder for job keys and feature caches. The file's own hash also covers its metadata (wall
    time, throughput), which differs between two runs that made the same weights."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_identity(path: Path) -> str:
    """The weights hash a checkpoint records in its metadata (files written before it was recorded:
    the file's hash)."""
    return read_meta(Path(path)).get("weights_sha256") or file_sha256(Path(path))


def save_encoder(path: Path, encoder: Encoder, meta: dict) -> str:
    """Write `encoder`'s weights and `meta` (JSON-serialisable) atomically; returns the file's sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    meta = {**meta, "backbone": encoder.name, "feat_dim": encoder.feat_dim, "weights_sha256": weights_sha256(tensors)}
    try:
        header = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise UserError(f"checkpoint metadata for {path} must be JSON-serialisable: {exc}") from exc
    with atomic_path(path) as tmp:  # a reader sees the old file or the whole new one
        save_file(tensors, str(tmp), metadata={META_KEY: header})
    return file_sha256(path)


def read_meta(path: Path) -> dict:
    """The metadata of a checkpoint without loading its weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get(META_KEY)
        if header is None:
            raise ValueError("no sslbench metadata in its header")
        return json.loads(header)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is not a readable sslbench encoder checkpoint ({exc}); "
                        "delete it and pretrain again") from exc


def load_encoder(path: Path) -> tuple[Encoder, dict]:
    """Rebuild the encoder a checkpoint was saved from and load its weights; returns (encoder, meta)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_meta(path)
    encoder = build_backbone(meta["backbone"], init="random")
    try:
        encoder.load_state_dict(load_file(str(path), device="cpu"))
    except Exception as exc:
        raise UserError(f"checkpoint {path} does not hold {meta['backbone']} weights ({exc}); "
                        "delete it and pretrain again") from exc
    return encoder, meta
