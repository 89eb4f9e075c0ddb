"""Did pretraining learn? The numbers every pretraining run records with its checkpoint.

- **encoder change**: ‖θ_end − θ_start‖ / ‖θ_start‖ over the encoder's learned weights. An optimiser
  whose steps are too small for the budget (e.g. LARS with a trust coefficient of 1e-3 at batch 64)
  leaves the encoder where it started: the "method" is then the random network.
- **embedding std**: the mean per-dimension standard deviation of the L2-normalised features, times
  √D. About 1 when the features spread over the sphere, 0 when every frame maps to one point (the
  collapse monitor of SimSiam, Chen & He 2021, Fig. 2).
- **effective rank** of the centred features (Roy & Vetterli 2007: exp of the entropy of the
  normalised singular values): how many directions the features really use; dimensional collapse
  shows as a small rank with a healthy std.
- **k-NN macro-F1**: where the frames carry labels (the simulator's planes), a weighted k-NN
  (Wu et al. 2018) from the frames of half of the subjects to the frames of the other half.
  Labels are never used by pretraining; they only read off whether the features separate planes.

All are measured on up to `DIAGNOSTIC_FRAMES` frames of the pretraining pool, before (the initial
encoder with BatchNorm statistics estimated on the pool, i.e. the `random` baseline of the same
draw) and after pretraining. `problems` turns them into plain-language findings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DIAGNOSTIC_FRAMES = 1024
# Frames whose BatchNorm statistics a baseline or a finished encoder gets (exact averages, evenly spaced).
BATCHNORM_FRAMES = 4096
KNN_K = 20
KNN_TEMPERATURE = 0.07  # Wu et al. 2018 (instance discrimination); lightly's and solo-learn's k-NN monitors
# What `problems` calls "did not learn". A run below MIN_CHANGE moved its weights by less than a
# tenth of a percent: measured, the LARS recipe with trust 1e-3 at batch 64 moved encoders by 1e-3
# in 18 steps and its probe matched the random network's.
MIN_CHANGE = 1e-2
# ...unless its pool k-NN macro-F1 changed by this much either way (|after − before|): a run continued from
# ImageNet at a tenth of the rate with ImageNet's BatchNorm kept moves its weights by less than MIN_CHANGE
# while its features move a lot (nothing re-normalises them): on the cpu track VICReg's (7.6e-3) raised the
# pool k-NN by 8 points, MoCo's (7.5e-3) lowered it by 25. Such a run moved; the page notes a fall.
MOVED_KNN_GAIN = 0.02
MIN_STD = 0.1
MIN_RANK = 2.0


@dataclass(frozen=True)
class DiagnosticData:
    frames: np.ndarray  # N×H×W uint8
    labels: np.ndarray | None  # N class indices, or None without labels
    groups: np.ndarray  # N subject (else video) ids: the k-NN bank and queries never share one


def evenly_spaced(positions: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` of `positions`, evenly spaced (every part of the pool represented)."""
    positions = np.asarray(positions, dtype=np.int64)
    if len(positions) > limit:
        positions = positions[np.unique(np.linspace(0, len(positions) - 1, limit).round().astype(int))]
    return positions


def diagnostic_data(index, frames: np.ndarray, positions: np.ndarray, limit: int = DIAGNOSTIC_FRAMES) -> DiagnosticData:
    """Up to `limit` frames of `positions`, evenly spaced."""
    positions = evenly_spaced(positions, limit)
    rows = index.iloc[positions]
    labels = rows["label"].to_numpy().astype(np.int64)
    groups = rows["subject_id"].astype(str).to_numpy()
    if len(np.unique(groups)) < 2:
        groups = rows["video_id"].astype(str).to_numpy()
    usable = labels >= 0
    if usable.sum() < 2 or len(np.unique(labels[usable])) < 2:
        labels = None
    return DiagnosticData(np.asarray(frames[positions]), labels, groups)


def _batches(frames: np.ndarray, resolution: int, batch_size: int, device: torch.device):
    for i in range(0, len(frames), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch_size])).to(device).unsqueeze(1).float().div_(255)
        if x.shape[-1] != resolution or x.shape[-2] != resolution:
            x = F.interpolate(x, size=(resolution, resolution), mode="area")
        yield x


def estimate_batchnorm(encoder: nn.Module, frames: np.ndarray, resolution: int, batch_size: int = 128,
                       device: torch.device | None = None, limit: int = BATCHNORM_FRAMES) -> None:
    """Set every BatchNorm's running statistics to exact averages over (up to `limit` evenly spaced)
    clean frames, with no gradient step (torch's `swa_utils.update_bn`): what a network's features
    look like on this data, whether it was pretrained or not."""
    device = device or next(encoder.parameters()).device
    frames = frames[evenly_spaced(np.arange(len(frames)), limit)]
    was_training = encoder.training
    torch.optim.swa_utils.update_bn(_batches(frames, resolution, batch_size, device), encoder)
    encoder.train(was_training)


@torch.no_grad()
def features(encoder: nn.Module, frames: np.ndarray, resolution: int, batch_size: int = 256) -> torch.Tensor:
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out = torch.cat([encoder(x).float().cpu() for x in _batches(frames, resolution, batch_size, device)])
    encoder.train(was_training)
    return out


def effective_rank(z: torch.Tensor) -> float:
    s = torch.linalg.svdvals((z - z.mean(0)).double())
    if float(s.sum()) == 0.0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def embedding_std(z: torch.Tensor) -> float:
    zn = F.normalize(z.double(), dim=1)
    return float(zn.std(0, unbiased=False).mean() * math.sqrt(z.shape[1]))


def knn_macro_f1(z: torch.Tensor, labels: np.ndarray, groups: np.ndarray, k: int = KNN_K,
                 temperature: float = KNN_TEMPERATURE) -> float | None:
    """Weighted k-NN from the frames of every other group (sorted) to the frames of the rest."""
    uniq = np.unique(groups)
    if len(uniq) < 2:
        return None
    query = np.isin(groups, uniq[1::2]) & (labels >= 0)
    bank = ~np.isin(groups, uniq[1::2]) & (labels >= 0)
    if query.sum() == 0 or bank.sum() == 0:
        return None
    zn = F.normalize(z.double(), dim=1)
    sim = zn[torch.from_numpy(query)] @ zn[torch.from_numpy(bank)].T
    top = sim.topk(min(k, int(bank.sum())), dim=1)
    classes = int(labels.max()) + 1
    votes = torch.zeros(int(query.sum()), classes, dtype=torch.float64)
    bank_labels = torch.from_numpy(labels[bank])
    votes.scatter_add_(1, bank_labels[top.indices], (top.values / temperature).exp())
    pred = votes.argmax(1).numpy()
    truth = labels[query]
    present = np.unique(truth)
    f1 = []
    for c in present:  # macro-F1 over the classes present among the queries
        tp = float(((pred == c) & (truth == c)).sum())
        denom = float((pred == c).sum() + (truth == c).sum())
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def snapshot(encoder: nn.Module, data: DiagnosticData, resolution: int) -> dict:
    z = features(encoder, data.frames, resolution)
    out = {"embedding_std": round(embedding_std(z), 6), "effective_rank": round(effective_rank(z), 4),
           "feature_dim": int(z.shape[1])}
    out["knn_macro_f1"] = None if data.labels is None else round(knn_macro_f1(z, data.labels, data.groups), 6)
    return out


def learned_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trainable tensors of an encoder state dict (BatchNorm's running statistics and counters
    are estimates, not weights)."""
    return {k: v for k, v in state.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def encoder_change(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> float:
    a, b = learned_weights(start), learned_weights(end)
    num = sum(float((b[k].double().cpu() - a[k].double().cpu()).pow(2).sum()) for k in a)
    den = sum(float(a[k].double().cpu().pow(2).sum()) for k in a)
    return math.sqrt(num / den) if den > 0 else math.inf


def problems(diag: dict, min_change: float = MIN_CHANGE, min_std: float = MIN_STD,
             min_rank: float = MIN_RANK) -> list[str]:
    """What the diagnostics say went wrong, each naming the number; [] when the run looks healthy. A run that
    moved its weights by less than `min_change` did not move, unless its pool k-NN changed by MOVED_KNN_GAIN."""
    found = []
    after = diag["after"]
    before_knn, after_knn = diag["before"].get("knn_macro_f1"), after.get("knn_macro_f1")
    moved = before_knn is not None and after_knn is not None and abs(after_knn - before_knn) >= MOVED_KNN_GAIN
    if diag["encoder_change"] < min_change and not moved:
        found.append(f"the encoder did not move: relative weight change {diag['encoder_change']:.2e} "
                     f"< {min_change:g} (the optimiser's steps are too small for this budget)")
    if after["embedding_std"] < min_std:
        found.append(f"the embeddings collapsed: std of the L2-normalised features × √D "
                     f"{after['embedding_std']:.3f} < {min_std:g}")
    if after["effective_rank"] < min_rank:
        found.append(f"the embeddings collapsed to a few directions: effective rank "
                     f"{after['effective_rank']:.2f} < {min_rank:g}")
    return found


def summary_line(method: str, diag: dict) -> str:
    b, a = diag["before"], diag["after"]
    knn = "" if a["knn_macro_f1"] is None else \
        f", k-NN macro-F1 {b['knn_macro_f1']:.3f} → {a['knn_macro_f1']:.3f}"
    return (f"{method}: encoder change {diag['encoder_change']:.3g}, effective rank {b['effective_rank']:.1f} → "
            f"{a['effective_rank']:.1f}, embedding std {b['embedding_std']:.3f} → {a['embedding_std']:.3f}{knn}")
