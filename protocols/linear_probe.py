"""The linear-probe protocol: frozen encoder → cached features → multinomial logistic regression.

Features of every frame of the downstream cache are extracted once per (init, dataset, resolution)
and stored under the run folder, keyed by the init's identity (checkpoint hash, or the baseline's
name), the dataset fingerprint and the resolution; the 3 fractions × 5 seeds probes then only read
them. The probe is fitted with full-batch L-BFGS (torch, on the GPU when there is one) on features
standardised with the training subset's statistics; the L2 strength is chosen on validation
macro-F1 and the test split is scored once with the chosen model.
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.data.cache import FrameCache
from benchmark.data.splits import label_fraction
from protocols.metrics import select_score, split_metrics
from protocols.spec import ProtocolSpec


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def feature_path(run_dir: Path, init_id: str, data_fingerprint: str, resolution: int) -> Path:
    key = hashlib.sha256(f"{init_id}|{data_fingerprint}|{resolution}".encode()).hexdigest()
    return Path(run_dir) / "features" / f"{key[:32]}.npy"


@torch.inference_mode()
def extract_features(encoder: nn.Module, frames: np.ndarray, batch_size: int, device: torch.device,
                     progress: bool = False) -> np.ndarray:
    """N×D float32 pooled features of uint8 frames N×H×W (the encoder is put in eval mode)."""
    from tqdm.auto import tqdm

    encoder = encoder.to(device).eval()
    out = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    for start in tqdm(range(0, len(frames), batch_size), desc="extracting features", unit="batch",
                      disable=not progress, file=sys.stderr, leave=False):
        x = torch.from_numpy(np.ascontiguousarray(frames[start:start + batch_size])).to(device)
        with autocast:
            f = encoder(x.unsqueeze(1).float().div_(255))
        out.append(f.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def cached_features(make_encoder: Callable[[], nn.Module], init_id: str, cache: FrameCache, run_dir: Path,
                    batch_size: int, device: torch.device, progress: bool = True) -> np.ndarray:
    """Features of every row of `cache`, extracted on first use and read back afterwards."""
    path = feature_path(run_dir, init_id, cache.fingerprint, cache.resolution)
    if path.exists():
        feats = np.load(path)
        if feats.shape[0] == len(cache.index):
            return feats
    if progress:
        print(f"extracting features: {init_id} on {cache.meta.get('spec', '?')} "
              f"({len(cache.index):,} frames, {cache.resolution} px)", file=sys.stderr, flush=True)
    feats = extract_features(make_encoder(), cache.frames, batch_size, device, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:  # an open file: np.save would append ".npy" to the temporary name
        np.save(f, feats)
    os.replace(tmp, path)
    return feats


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights n / (K · n_k), 0 for a class absent from `labels`."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.divide(len(labels), num_classes * counts, out=np.zeros(num_classes), where=counts > 0)


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, *,
                            weights: torch.Tensor | None, max_iter: int, tolerance: float,
                            seed: int) -> nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS; loss = weighted CE + l2·‖W‖²."""
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(x.shape[1], num_classes).to(x.device)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.01)
        head.bias.zero_()
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=tolerance,
                            tolerance_change=tolerance * 1e-3, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(x), y, weight=weights) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def run_probe(features: np.ndarray, cache: FrameCache, spec: ProtocolSpec, fraction: float, seed: int,
              device: torch.device | None = None) -> dict:
    """One probe job → {"metrics": {"val", "test"}, "train": {...}} (the result's own fields)."""
    device = device or default_device()
    probe, feat_cfg = spec.settings["probe"], spec.settings["features"]
    labels = cache.index["label"].to_numpy()
    k = cache.num_classes
    tr = label_fraction(cache.index, fraction, seed)
    val = _labelled(cache, "val")
    te = _labelled(cache, "test")

    x = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(device)
    if feat_cfg["standardize"]:
        mean = x[tr].mean(0, keepdim=True)
        std = x[tr].std(0, unbiased=False, keepdim=True).clamp_min(1e-6)
        x = (x - mean) / std
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    w = torch.tensor(class_weights(labels[tr], k), dtype=torch.float32, device=device) \
        if probe["class_weighted"] else None

    best = None
    val_scores = {}
    # Strongest regularisation first, so that a tie keeps the simpler model.
    for l2 in sorted(probe["l2_grid"], reverse=True):
        head = fit_logistic_regression(x[tr], y[tr], k, l2, weights=w, max_iter=probe["max_iter"],
                                       tolerance=probe["tolerance"], seed=seed)
        with torch.no_grad():
            pred = head(x[val]).argmax(1).cpu().numpy()
        metrics = split_metrics(labels[val], pred, cache.class_names)
        score = select_score(metrics, probe["select_metric"])
        val_scores[f"{l2:g}"] = score
        if best is None or score > best[0]:
            best = (score, l2, head, metrics)
    _, l2, head, val_metrics = best
    with torch.no_grad():  # the test split is scored once, with the model chosen on validation
        test_pred = head(x[te]).argmax(1).cpu().numpy()
    return {
        "metrics": {"val": val_metrics, "test": split_metrics(labels[te], test_pred, cache.class_names)},
        "train": {"n_train": int(len(tr)), "l2": l2, "val_scores": val_scores,
                  "feature_dim": int(features.shape[1]), "device": str(device)},
    }


def _labelled(cache: FrameCache, split: str) -> np.ndarray:
    pos = cache.split_positions(split)
    return pos[cache.index["label"].to_numpy()[pos] >= 0]
