"""Classification metrics of one split, as the result schema stores them (numpy only).

Conventions follow scikit-learn's with `zero_division=0`: a class with no true and no predicted
example has F1 0 and counts in the macro average (every class of the task is averaged, so a model
that never predicts a class is penalised); balanced accuracy is the mean recall over the classes
present in `y_true`.
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)  # 2·TP + FP + FN
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def balanced_accuracy(cm: np.ndarray) -> float:
    support = cm.sum(1)
    present = support > 0
    return float((np.diag(cm)[present] / support[present]).mean()) if present.any() else 0.0


def accuracy(cm: np.ndarray) -> float:
    n = cm.sum()
    return float(np.trace(cm) / n) if n else 0.0


def split_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """All metrics of one split, keyed as in `leaderboard/result.schema.json` (split_metrics)."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    f1 = per_class_f1(cm)
    return {
        "macro_f1": float(f1.mean()),
        "balanced_accuracy": balanced_accuracy(cm),
        "accuracy": accuracy(cm),
        "per_class_f1": {name: float(v) for name, v in zip(class_names, f1, strict=True)},
        "confusion_matrix": cm.astype(int).tolist(),
        "n": int(cm.sum()),
    }


def select_score(metrics: dict, metric: str) -> float:
    """The model-selection score (a protocol's `select_metric`) of one split's metrics."""
    return float(metrics[metric])
