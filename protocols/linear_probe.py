"""The linear-probe protocol: frozen encoder → cached features → multinomial logistic regression.

Features of every frame of the downstream cache are extracted once per (init, dataset, resolution)
and stored under the run folder, keyed by the init's identity (checkpoint hash, or the baseline's
name), the dataset fingerprint and the resolution; the 3 fractions × 5 seeds probes then only read
them. The probe is fitted with full-batch L-BFGS (torch, on the GPU when there is one) on features
standardised with the training subset's statistics; the L2 strength is chosen on validation
macro-F1 and the test split is scored once with the chosen model.
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.data.cache import FrameCache
from benchmark.data.splits import MIN_PER_CLASS, label_fraction
from benchmark.device import default_device
from benchmark.errors import UserError
from leaderboard.atomic import atomic_path, remove_stale_temp_files
from protocols.metrics import select_score, split_metrics
from protocols.spec import ProtocolSpec


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
        x = torch.from_numpy(np.array(frames[start:start + batch_size])).to(device)  # a copy: the cache is read-only
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
    remove_stale_temp_files(path.parent)  # left by a run killed while writing
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # an open file: np.save would add ".npy" to a name
        np.save(f, feats)
    return feats


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights n / (K · n_k), 0 for a class absent from `labels`."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.divide(len(labels), num_classes * counts, out=np.zeros(num_classes), where=counts > 0)


def standardizer(x: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, scale, constant) of the columns of `x` over `rows`, as scikit-learn's StandardScaler
    computes them: a column that is constant on `rows` gets scale 1, not a clamped tiny std.

    A feature that is constant on the few training images but varies elsewhere (ReLU6 features of
    a frozen encoder are often exactly 0 on five images) would otherwise be inflated by up to 1e6
    on val/test; with scale 1 it stays as it is and, its gradient being 0, its weight stays at 0.
    The test for "constant" is scikit-learn's `_is_constant_feature` (float64 rounding bound).
    """
    sub = x[torch.as_tensor(rows, device=x.device)].double()
    n = sub.shape[0]
    mean = sub.mean(0)
    var = sub.var(0, unbiased=False)
    eps = torch.finfo(torch.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = torch.where(constant, torch.ones_like(var), var.sqrt())
    return mean.to(x.dtype), scale.to(x.dtype), constant


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2_grid: list[float], *,
                            weights: torch.Tensor | None, max_iter: int,
                            tolerance: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Multinomial logistic regressions for every L2 strength at once, by full-batch L-BFGS from zero.

    Model g minimises weighted CE + l2_grid[g]·‖W_g‖². The models are independent, so their losses
    are summed into one objective and optimised together: one L-BFGS run instead of one per
    strength (the per-iteration Python overhead, not the arithmetic, dominates at these sizes).
    Each objective is strictly convex (λ > 0) and the start is W = 0, b = 0, so the result is the
    unique minimiser up to the solver's tolerance: no seed enters. Returns W (G×D×K), b (G×K) and
    {"iterations", "converged", "grad_max"}: converged means L-BFGS stopped on one of its tolerances
    (largest gradient entry <= `tolerance`, or no further progress in float32) rather than on its
    iteration or evaluation budget.
    """
    g, d = len(l2_grid), x.shape[1]
    weight_param = torch.zeros(g, d, num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(g, num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    lam = torch.tensor(l2_grid, dtype=x.dtype, device=x.device)
    sample_w = weights[y] if weights is not None else torch.ones_like(y, dtype=x.dtype)
    targets = y.expand(g, -1).unsqueeze(-1)
    max_eval = 2 * max_iter
    opt = torch.optim.LBFGS([weight_param, bias], lr=1.0, max_iter=max_iter, max_eval=max_eval,
                            tolerance_grad=tolerance, tolerance_change=tolerance * 1e-3, history_size=20,
                            line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        logits = torch.einsum("nd,gdk->gnk", x, weight_param) + bias[:, None, :]
        nll = -logits.log_softmax(-1).gather(-1, targets).squeeze(-1)  # G×N
        return ((nll * sample_w).sum(1) / sample_w.sum()).sum() + (lam * weight_param.pow(2).sum((1, 2))).sum()

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    opt.step(closure)
    state = opt.state[opt._params[0]]
    iterations, evaluations = int(state.get("n_iter", 0)), int(state.get("func_evals", 0))
    grad_max = max(float(p.grad.abs().max()) for p in (weight_param, bias) if p.grad is not None)
    converged = grad_max <= tolerance or (iterations < max_iter and evaluations < max_eval)
    report = {"iterations": iterations, "converged": bool(converged), "grad_max": grad_max}
    return weight_param.detach(), bias.detach(), report


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """The probe's tensors are small: on a CPU, a second intra-op thread only adds synchronisation,
    and on a loaded machine its spin-waiting made a fit 20× slower (measured: 0.6 s → 11 s)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_probe(features: np.ndarray, cache: FrameCache, spec: ProtocolSpec, fraction: float, seed: int,
              device: torch.device | None = None, extra_tests: tuple[str, ...] = ()) -> dict:
    """One probe job → {"metrics": {"val", "test"}, "train": {...}} (the result's own fields).
    `extra_tests`: further splits of the cache that the chosen model scores, each under its own name in
    "metrics" (the cross-scanner protocol's in-scanner test set)."""
    device = device or default_device()
    with _one_cpu_thread(device):
        return _run_probe(features, cache, spec, fraction, seed, device, extra_tests)


def _run_probe(features: np.ndarray, cache: FrameCache, spec: ProtocolSpec, fraction: float, seed: int,
               device: torch.device, extra_tests: tuple[str, ...] = ()) -> dict:
    probe, feat_cfg = spec.settings["probe"], spec.settings["features"]
    labels = cache.index["label"].to_numpy()
    k = cache.num_classes
    tr = training_subset(cache, fraction, seed, spec)
    val = cache.labelled_positions("val")
    te = cache.labelled_positions("test")

    x = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(device)
    constant = 0
    if feat_cfg["standardize"]:
        mean, scale, is_constant = standardizer(x, tr)
        x = (x - mean) / scale
        constant = int(is_constant.sum())
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    w = torch.tensor(class_weights(labels[tr], k), dtype=torch.float32, device=device) \
        if probe["class_weighted"] else None

    grid = sorted(probe["l2_grid"], reverse=True)  # strongest first: a tie keeps the simpler model
    weight_param, bias, solver = fit_logistic_regression(x[tr], y[tr], k, grid, weights=w,
                                                         max_iter=probe["max_iter"], tolerance=probe["tolerance"])
    with torch.no_grad():
        val_pred = (torch.einsum("nd,gdk->gnk", x[val], weight_param) + bias[:, None, :]).argmax(-1).cpu().numpy()
    val_all = [split_metrics(labels[val], pred, cache.class_names) for pred in val_pred]
    scores = [select_score(m, probe["select_metric"]) for m in val_all]
    best = int(np.argmax(scores))  # the first maximum: the strongest regularisation among ties
    l2, val_metrics = grid[best], val_all[best]
    val_scores = {f"{v:g}": s for v, s in zip(grid, scores, strict=True)}
    metrics = {"val": val_metrics}
    for split in ("test", *extra_tests):  # each test split is scored once, with the model chosen on validation
        rows = te if split == "test" else cache.labelled_positions(split)
        with torch.no_grad():
            pred = (x[rows] @ weight_param[best] + bias[best]).argmax(1).cpu().numpy()
        metrics[split] = split_metrics(labels[rows], pred, cache.class_names)
    return {
        "metrics": metrics,
        "train": {"n_train": int(len(tr)), "l2": l2, "val_scores": val_scores,
                  "feature_dim": int(features.shape[1]), "constant_features": constant,
                  "solver": solver, "device": str(device)},
    }


def min_per_class(spec: ProtocolSpec | None) -> int:
    """The few-labels floor of `spec` (benchmark.data.splits.MIN_PER_CLASS without a `[labels]` table)."""
    return (spec.settings.get("labels") or {}).get("min_per_class", MIN_PER_CLASS) if spec is not None \
        else MIN_PER_CLASS


def training_subset(cache: FrameCache, fraction: float, seed: int, spec: ProtocolSpec | None = None) -> np.ndarray:
    """Row positions of the label subset. `label_fraction` takes at least `min_per_class` images (the
    protocol's `[labels]` table; 1 without it) of every class present in the train split, so a small
    fraction never drops a class; a class with no training image at all cannot be learnt and is an error
    naming it."""
    positions = label_fraction(cache.index, fraction, seed, min_per_class(spec))
    train = cache.index["label"].to_numpy()[cache.labelled_positions("train")]
    missing = [cache.class_names[c] for c in range(cache.num_classes) if not (train == c).any()]
    if missing:
        raise UserError(f"downstream data {cache.meta.get('spec', cache.root)}: class(es) {', '.join(missing)} "
                        "have no labelled image in the train split, so no label fraction can include them; "
                        "add images of those classes (or more subjects)")
    return positions
