"""The k-NN protocol: weighted votes, choice of k and temperature on validation only, determinism,
its spec and its place in the grid."""
import numpy as np
import pytest
import torch

from benchmark.errors import UserError
from protocols.grid import job_seeds
from protocols.knn import knn_predict, l2_normalise, run_knn
from protocols.presets import load_preset
from protocols.spec import load_protocol
from tests.unit.downstream_fakes import fake_downstream

CPU = torch.device("cpu")


def _planted(cache, dim=16, noise=0.6, seed=0):
    """A class direction per class plus isotropic noise: a signal that cosine similarity sees."""
    rng = np.random.default_rng(seed)
    labels = cache.index["label"].to_numpy()
    centers = rng.normal(size=(cache.num_classes, dim))
    return (centers[labels] + noise * rng.normal(size=(len(labels), dim))).astype(np.float32)


def test_knn_on_a_planted_signal_scores_well_above_chance_and_on_noise_does_not(tmp_path):
    cache = fake_downstream(tmp_path)
    spec = load_protocol("knn")
    out = run_knn(_planted(cache), cache, spec, 1.0, seed=0, device=CPU)
    assert out["metrics"]["test"]["macro_f1"] > 0.8  # 3 classes: chance is 0.33; measured 1.0
    assert out["metrics"]["test"]["n"] == int((cache.index["split"] == "test").sum())
    noise = np.random.default_rng(1).normal(size=(len(cache.index), 16)).astype(np.float32)
    assert run_knn(noise, cache, spec, 1.0, seed=0, device=CPU)["metrics"]["test"]["macro_f1"] < 0.6


def test_k_and_temperature_are_chosen_on_validation_and_the_test_split_never_influences_them(tmp_path):
    cache = fake_downstream(tmp_path)
    spec = load_protocol("knn")
    feats = _planted(cache, noise=1.2)
    out = run_knn(feats, cache, spec, 1.0, seed=0, device=CPU)
    train = out["train"]
    grid = spec.settings["knn"]
    assert len(train["val_scores"]) == len(grid["k_grid"]) * len(grid["temperature_grid"])
    chosen = train["val_scores"][f"k={train['k']},T={train['temperature']:g}"]
    assert chosen == max(train["val_scores"].values())
    assert out["metrics"]["val"]["macro_f1"] == pytest.approx(chosen)
    # Replace the test rows' features by noise: the choice and the validation scores stay the same,
    # only the test metrics change.
    test_rows = cache.labelled_positions("test")
    spoilt = feats.copy()
    spoilt[test_rows] = np.random.default_rng(5).normal(size=(len(test_rows), feats.shape[1]))
    other = run_knn(spoilt, cache, spec, 1.0, seed=0, device=CPU)
    assert (other["train"]["k"], other["train"]["temperature"]) == (train["k"], train["temperature"])
    assert other["train"]["val_scores"] == train["val_scores"]
    assert other["metrics"]["val"] == out["metrics"]["val"]
    assert other["metrics"]["test"] != out["metrics"]["test"]


def test_knn_is_deterministic_and_the_seed_changes_only_the_label_subset(tmp_path):
    cache = fake_downstream(tmp_path)
    spec = load_protocol("knn")
    feats = _planted(cache, noise=1.5)
    a = run_knn(feats, cache, spec, 0.1, seed=3, device=CPU)
    b = run_knn(feats, cache, spec, 0.1, seed=3, device=CPU)
    assert a == b
    full = run_knn(feats, cache, spec, 1.0, seed=0, device=CPU)
    assert cache.num_classes <= a["train"]["n_train"] < full["train"]["n_train"]
    # k above the label subset's size uses every training image, and says so.
    assert a["train"]["k_used"] == min(a["train"]["k"], a["train"]["n_train"])


def test_votes_are_weighted_by_exp_similarity_over_temperature():
    # One training image very close to the query (class 0), two at a moderate angle (class 1).
    train = l2_normalise(torch.tensor([[1.0, 0.05], [0.6, 0.8], [0.6, -0.8]]))
    labels = torch.tensor([0, 1, 1])
    query = l2_normalise(torch.tensor([[1.0, 0.0]]))
    pred = knn_predict(train, labels, query, 2, ks=[1, 3], temperatures=[0.05, 10.0])
    assert pred[0, :, 0].tolist() == [0, 0]  # k = 1: the nearest image's class, at any temperature
    # k = 3: a sharp temperature lets the close image outvote the two far ones; a flat one is a majority vote.
    assert pred[1, :, 0].tolist() == [0, 1]
    # A k above the training set's size uses all of it.
    assert knn_predict(train, labels, query, 2, ks=[50], temperatures=[10.0])[0, 0].tolist() == [1]


def test_the_knn_spec_validates_and_presets_may_override_it():
    spec = load_protocol("knn")
    probe = load_protocol("linear_probe")
    assert spec.version == 1
    for key in ("fractions", "seeds", "pretrain_seeds"):  # paired with the linear probe job by job
        assert spec.settings[key] == probe.settings[key]
    assert load_protocol("knn", {"knn": {"k_grid": [3]}}).settings["knn"]["k_grid"] == [3]
    assert load_preset("smoke")["protocols"]["knn"]["pretrain_seeds"] == [0]
    for overrides, message in (({"knn": {"k_grid": [0, 5]}}, "'knn.k_grid' values must be >= 1"),
                               ({"knn": {"temperature_grid": [0.0]}}, "'knn.temperature_grid' values must be > 0"),
                               ({"knn": {"k_grid": [5, 5]}}, "'knn.k_grid' must not repeat"),
                               ({"knn": {"select_metric": "auc"}}, "'knn.select_metric' must be one of"),
                               ({"knn": {"k": 5}}, "unknown key 'knn.k'")):
        with pytest.raises(UserError, match=message):
            load_protocol("knn", overrides)


def test_knn_runs_one_seed_at_full_labels_like_the_linear_probe():
    spec = load_protocol("knn")
    assert job_seeds(spec, 1.0) == [0]
    assert job_seeds(spec, 0.1) == spec.seeds
