import numpy as np
import pytest
import torch

from protocols.linear_probe import cached_features, class_weights, feature_path, run_probe
from protocols.spec import load_protocol
from tests.unit.downstream_fakes import TinyEncoder, fake_downstream

CPU = torch.device("cpu")


def _separable_features(cache, dim=6, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    labels = cache.index["label"].to_numpy()
    centers = rng.normal(size=(cache.num_classes, dim)) * 2
    return (centers[labels] + noise * rng.normal(size=(len(labels), dim))).astype(np.float32)


def test_probe_learns_separable_features_and_picks_l2_on_validation(tmp_path):
    cache = fake_downstream(tmp_path)
    spec = load_protocol("linear_probe")
    out = run_probe(_separable_features(cache), cache, spec, 1.0, seed=0, device=CPU)
    assert out["metrics"]["test"]["macro_f1"] > 0.9
    assert set(out["train"]["val_scores"]) == {f"{v:g}" for v in spec.settings["probe"]["l2_grid"]}
    chosen = out["train"]["val_scores"][f"{out['train']['l2']:g}"]
    assert chosen == max(out["train"]["val_scores"].values())
    assert out["metrics"]["val"]["macro_f1"] == pytest.approx(chosen)
    assert out["metrics"]["test"]["n"] == int((cache.index["split"] == "test").sum())


def test_probe_on_noise_scores_near_chance_and_the_seed_changes_the_subset(tmp_path):
    cache = fake_downstream(tmp_path)
    spec = load_protocol("linear_probe")
    noise = np.random.default_rng(1).normal(size=(len(cache.index), 6)).astype(np.float32)
    out = run_probe(noise, cache, spec, 1.0, seed=0, device=CPU)
    assert out["metrics"]["test"]["macro_f1"] < 0.7
    small = [run_probe(noise, cache, spec, 0.1, seed=s, device=CPU)["train"]["n_train"] for s in (0, 1)]
    assert small[0] < out["train"]["n_train"] and small[0] >= cache.num_classes  # ≥ 1 per class


def test_probe_is_deterministic_for_a_seed(tmp_path):
    cache = fake_downstream(tmp_path)
    spec = load_protocol("linear_probe")
    feats = _separable_features(cache, noise=2.0)
    a = run_probe(feats, cache, spec, 0.1, seed=3, device=CPU)
    b = run_probe(feats, cache, spec, 0.1, seed=3, device=CPU)
    assert a["metrics"] == b["metrics"]


def test_features_are_extracted_once_and_keyed_by_init_data_and_resolution(tmp_path):
    cache = fake_downstream(tmp_path / "data")
    calls = []

    def make():
        calls.append(1)
        torch.manual_seed(0)
        return TinyEncoder()

    a = cached_features(make, "ssl:abc", cache, tmp_path / "run", 32, CPU, progress=False)
    b = cached_features(make, "ssl:abc", cache, tmp_path / "run", 32, CPU, progress=False)
    assert len(calls) == 1 and np.array_equal(a, b)
    assert a.shape == (len(cache.index), TinyEncoder.feat_dim) and a.dtype == np.float32
    assert feature_path(tmp_path / "run", "ssl:abc", cache.fingerprint, 16).exists()
    assert feature_path(tmp_path, "ssl:abc", cache.fingerprint, 16) != feature_path(tmp_path, "ssl:abd", cache.fingerprint, 16)
    assert feature_path(tmp_path, "ssl:abc", cache.fingerprint, 16) != feature_path(tmp_path, "ssl:abc", "0" * 64, 16)
    assert feature_path(tmp_path, "ssl:abc", cache.fingerprint, 16) != feature_path(tmp_path, "ssl:abc", cache.fingerprint, 32)
    assert not list((tmp_path / "run" / "features").glob(".*"))  # no temporary file left


def test_class_weights_are_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert w.tolist() == pytest.approx([4 / (3 * 3), 4 / 3, 0.0])


def test_probe_grid_of_one_checkpoint_is_fast(tmp_path):
    """3 fractions × 5 seeds on smoke-sized features (216 train, 1280-d) — seconds, not minutes."""
    import time

    cache = fake_downstream(tmp_path, n_subjects=30, per_subject=12)
    feats = np.random.default_rng(0).normal(size=(len(cache.index), 1280)).astype(np.float32)
    feats[:, :3] += 3 * np.eye(3)[cache.index["label"].to_numpy()]
    spec = load_protocol("linear_probe")
    start = time.perf_counter()
    for fraction in spec.fractions:
        for seed in spec.seeds:
            run_probe(feats, cache, spec, fraction, seed, CPU)
    elapsed = time.perf_counter() - start
    print(f"linear-probe grid (15 probes): {elapsed:.2f} s")
    assert elapsed < 60  # generous: the machine is shared; the reported figure comes from tests/perf


def test_a_class_without_any_training_image_is_a_clear_error(tmp_path):
    from benchmark.errors import UserError

    cache = fake_downstream(tmp_path)
    train_b = (cache.index["split"] == "train") & (cache.index["label"] == 1)
    cache.index.loc[train_b, "label"] = 0  # class "B" vanishes from the train split
    with pytest.raises(UserError, match="class\\(es\\) B have no labelled image in the train split"):
        run_probe(_separable_features(cache), cache, load_protocol("linear_probe"), 0.01, 0, CPU)
