"""The k-NN protocol: frozen encoder → the linear probe's cached features → weighted k-NN.

Features are L2-normalised; a query (a val or test image) is compared by cosine similarity with every
image of the label subset, and its k most similar ones vote for their classes with weights
exp(similarity / T) (the weighted k-NN of solo-learn and lightly). Every (k, T) of the protocol's grids
is scored on validation, the best pair is kept (ties: the first in grid order, smallest k then smallest
T) and the test split is scored once with it. Nothing is trained and no seed enters: the result is a
function of the features and the label subset.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmark.device import default_device
from protocols.linear_probe import training_subset
from protocols.metrics import select_score, split_metrics
from protocols.spec import ProtocolSpec


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length; an all-zero row stays zero (similarity 0 to everything)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def knn_predict(train: torch.Tensor, train_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
                ks: list[int], temperatures: list[float], batch_size: int = 1024) -> np.ndarray:
    """Predicted classes (len(ks) × len(temperatures) × Q) of the queries by weighted k-NN on
    L2-normalised `train` and `queries`. A k above the number of training rows uses them all.

    Weights are exp((s - s_max) / T), s_max the query's largest similarity: the same vote as
    exp(s / T) up to a factor per query, which leaves its argmax unchanged and cannot overflow.
    Vote ties go to the lowest class index.
    """
    n = train.shape[0]
    k_max = min(max(ks), n)
    one_hot = torch.nn.functional.one_hot(train_labels, num_classes).to(torch.float64)
    out = np.zeros((len(ks), len(temperatures), queries.shape[0]), dtype=np.int64)
    for start in range(0, queries.shape[0], batch_size):
        q = queries[start:start + batch_size]
        sim, idx = (q @ train.T).topk(k_max, dim=1)  # sorted, most similar first
        sim = sim.to(torch.float64)
        votes_of = one_hot[idx]  # Q × k_max × C
        for i, k in enumerate(ks):
            kk = min(k, n)
            s = sim[:, :kk]
            for j, t in enumerate(temperatures):
                w = torch.exp((s - s[:, :1]) / t)
                scores = (w.unsqueeze(-1) * votes_of[:, :kk]).sum(1)
                out[i, j, start:start + len(q)] = scores.argmax(1).cpu().numpy()
    return out


def run_knn(features: np.ndarray, cache, spec: ProtocolSpec, fraction: float, seed: int,
            device: torch.device | None = None, extra_tests: tuple[str, ...] = ()) -> dict:
    """One k-NN job → {"metrics": {"val", "test"}, "train": {...}} (the result's own fields).
    `extra_tests`: further splits of the cache scored with the (k, T) chosen on validation, each under its
    own name in "metrics" (the cross-scanner protocol's in-scanner test set)."""
    device = device or default_device()
    cfg = spec.settings["knn"]
    labels = cache.index["label"].to_numpy()
    tr = training_subset(cache, fraction, seed, spec)
    val = cache.labelled_positions("val")
    te = cache.labelled_positions("test")

    x = l2_normalise(torch.from_numpy(np.asarray(features, dtype=np.float32)).to(device))
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    ks = sorted(cfg["k_grid"])
    temps = sorted(cfg["temperature_grid"])
    k_classes = cache.num_classes
    val_pred = knn_predict(x[tr], y[tr], x[val], k_classes, ks, temps, cfg["query_batch_size"])
    pairs = [(k, t) for k in ks for t in temps]
    val_all = [split_metrics(labels[val], val_pred[i, j], cache.class_names)
               for i in range(len(ks)) for j in range(len(temps))]
    scores = [select_score(m, cfg["select_metric"]) for m in val_all]
    best = int(np.argmax(scores))  # the first maximum: smallest k, then smallest temperature
    k, t = pairs[best]
    # Each test split is scored once, with the pair chosen on validation.
    metrics = {"val": val_all[best]}
    for split in ("test", *extra_tests):
        rows = te if split == "test" else cache.labelled_positions(split)
        pred = knn_predict(x[tr], y[tr], x[rows], k_classes, [k], [t], cfg["query_batch_size"])[0, 0]
        metrics[split] = split_metrics(labels[rows], pred, cache.class_names)
    return {
        "metrics": metrics,
        "train": {"n_train": int(len(tr)), "k": int(k), "k_used": int(min(k, len(tr))), "temperature": float(t),
                  "val_scores": {f"k={kk},T={tt:g}": s for (kk, tt), s in zip(pairs, scores, strict=True)},
                  "feature_dim": int(features.shape[1]), "device": str(device)},
    }
