import numpy as np
import pytest
import torch

from protocols.linear_probe import cached_features, class_weights, feature_path, run_probe, training_subset
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
    # Separable features: several strengths tie on validation, and a tie keeps the strongest (the simplest model).
    tied = [float(v) for v, score in out["train"]["val_scores"].items() if score == chosen]
    assert len(tied) > 1 and out["train"]["l2"] == max(tied)
    assert out["metrics"]["test"]["n"] == int((cache.index["split"] == "test").sum())


def test_probe_on_noise_scores_near_chance_and_the_seed_changes_the_subset(tmp_path):
    cache = fake_downstream(tmp_path)
    spec = load_protocol("linear_probe")
    noise = np.random.default_rng(1).normal(size=(len(cache.index), 6)).astype(np.float32)
    out = run_probe(noise, cache, spec, 1.0, seed=0, device=CPU)
    assert out["metrics"]["test"]["macro_f1"] < 0.7
    small = [run_probe(noise, cache, spec, 0.1, seed=s, device=CPU) for s in (0, 1)]
    assert small[0]["train"]["n_train"] < out["train"]["n_train"]
    assert small[0]["train"]["n_train"] >= cache.num_classes  # ≥ 1 per class
    # Different seeds, different label subsets: the fitted probes differ.
    assert small[0]["metrics"]["val"]["confusion_matrix"] != small[1]["metrics"]["val"]["confusion_matrix"]


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


def test_the_protocol_grid_converges_and_learns_a_planted_signal(tmp_path):
    """The protocol's whole grid (3 fractions × its seeds) on smoke-sized features (1280-d, 3 of them
    carry the label): every fit converges, and the probe finds the signal at 100 % labels. Its speed
    is measured by tests/perf/test_probe_speed.py, not here."""
    cache = fake_downstream(tmp_path, n_subjects=30, per_subject=12)
    feats = np.random.default_rng(0).normal(size=(len(cache.index), 1280)).astype(np.float32)
    feats[:, :3] += 3 * np.eye(3)[cache.index["label"].to_numpy()]
    spec = load_protocol("linear_probe")
    for fraction in spec.fractions:
        for seed in spec.seeds:
            out = run_probe(feats, cache, spec, fraction, seed, CPU)
            assert out["train"]["solver"]["converged"], (fraction, seed, out["train"]["solver"])
    assert out["metrics"]["test"]["macro_f1"] > 0.5  # 3 classes: chance is 0.33; measured 0.64


def test_a_class_without_any_training_image_is_a_clear_error(tmp_path):
    from benchmark.errors import UserError

    cache = fake_downstream(tmp_path)
    train_b = (cache.index["split"] == "train") & (cache.index["label"] == 1)
    cache.index.loc[train_b, "label"] = 0  # class "B" vanishes from the train split
    with pytest.raises(UserError, match="class\\(es\\) B have no labelled image in the train split"):
        run_probe(_separable_features(cache), cache, load_protocol("linear_probe"), 0.01, 0, CPU)
    cache.index.loc[(cache.index["split"] == "train") & (cache.index["label"] == 2), "label"] = 0
    with pytest.raises(UserError, match="^downstream data fake: class\\(es\\) B, C have no labelled image"):
        run_probe(_separable_features(cache), cache, load_protocol("linear_probe"), 0.01, 0, CPU)


def test_the_protocols_few_labels_floor_reaches_the_probe(tmp_path):
    """A protocol's `[labels] min_per_class` is the probe's floor of training images per class; without
    the table (or without a protocol) the floor is 1."""
    from protocols.linear_probe import min_per_class

    cache = fake_downstream(tmp_path)
    plain, three = load_protocol("linear_probe"), load_protocol("linear_probe", {"labels": {"min_per_class": 3}})
    assert min_per_class(None) == min_per_class(plain) == 1 and min_per_class(three) == 3
    feats = _separable_features(cache)
    assert run_probe(feats, cache, plain, 0.01, 0, CPU)["train"]["n_train"] == cache.num_classes
    assert run_probe(feats, cache, three, 0.01, 0, CPU)["train"]["n_train"] == 3 * cache.num_classes


def test_features_constant_on_the_training_subset_keep_scale_one_and_weight_zero(tmp_path):
    """A feature that is constant on the few training images but not elsewhere (a ReLU feature that
    is 0 on five images) must not be inflated on val/test by a tiny std, nor carry a weight."""
    from protocols.linear_probe import standardizer

    # Columns: varying; 0 on the training rows; −3 on them (a constant of either sign is constant); varying
    # around a mean of exactly 0 (not constant, whatever the mean).
    x = torch.tensor([[1.0, 0.0, -3.0, -2.0], [3.0, 0.0, -3.0, 2.0], [5.0, 0.0, -3.0, 0.0], [2.0, 7.0, 4.0, 1.0]])
    mean, scale, constant = standardizer(x, np.array([0, 1, 2]))
    assert constant.tolist() == [False, True, True, False]
    assert torch.isfinite((x - mean) / scale).all()
    assert scale[1] == 1.0 and ((x - mean) / scale)[3, 1] == 7.0  # as it is, not × 1e6
    assert scale[0] == pytest.approx(np.std([1.0, 3.0, 5.0]))
    # In a probe: such features change nothing. Two features constant (0) on the training subset and
    # huge elsewhere leave the predictions of the informative ones unchanged.
    cache = fake_downstream(tmp_path)
    spec = load_protocol("linear_probe")
    feats = _separable_features(cache)
    base = run_probe(feats, cache, spec, 0.01, seed=1, device=CPU)
    tr = training_subset(cache, 0.01, 1)
    extra = np.random.default_rng(2).normal(0, 1e3, size=(len(feats), 2)).astype(np.float32)
    extra[tr] = 0.0
    with_constant = run_probe(np.hstack([feats, extra]), cache, spec, 0.01, seed=1, device=CPU)
    assert with_constant["train"]["constant_features"] == 2 and base["train"]["constant_features"] == 0
    assert with_constant["metrics"] == base["metrics"]


def _objective64(x, y, w, b, l2):
    """The probe's objective (mean CE + l2·‖W‖²) in float64, at float32 or float64 weights."""
    logits = x.double() @ w.double() + b.double()
    return float(-logits.log_softmax(-1).gather(1, y[:, None]).mean() + l2 * w.double().pow(2).sum())


def test_the_fit_starts_at_zero_converges_and_says_so():
    """A float32 fit that says it converged is at the optimum to float32's resolution, on any CPU.

    Where float32 L-BFGS stops is set by rounding, not by the data: it ends when a step no longer lowers
    the float32 loss (tolerance_change), and its largest gradient entry there depends on the arithmetic
    path (1.1e-5 on an Intel Xeon with AVX-512 and with MKL held to SSE4.2, 1.4e-6 with MKL held to AVX2).
    So the check is the one that means "converged" everywhere: the objective, evaluated in float64, is
    within 1e-6 of its value at the float64 optimum, relative to it. Measured: 5.8e-9 on the paths above
    (8.9e-11 under AVX2), so 1e-6 leaves two orders of magnitude for rounding, while the same fit stopped
    after 5, 3 or 2 iterations is 9e-4, 9e-2 and 0.29 away."""
    from protocols.linear_probe import fit_logistic_regression

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(40, 5)).astype(np.float32))
    y = torch.from_numpy((x[:, 0] > 0).numpy().astype(np.int64))
    w, b, report = fit_logistic_regression(x, y, 2, [1e-2], weights=None, max_iter=500, tolerance=1e-6)
    assert report["converged"] and report["iterations"] < 500
    w64, b64, exact = fit_logistic_regression(x.double(), y, 2, [1e-2], weights=None, max_iter=500, tolerance=1e-12)
    assert exact["converged"] and exact["grad_max"] <= 1e-7  # float64's own floor here: 2.5e-9
    best = _objective64(x, y, w64[0], b64[0], 1e-2)
    assert _objective64(x, y, w[0], b[0], 1e-2) - best <= 1e-6 * best
    w2, b2, _ = fit_logistic_regression(x, y, 2, [1e-2], weights=None, max_iter=500, tolerance=1e-6)
    assert torch.equal(w, w2) and torch.equal(b, b2)  # no seed enters: the same data, the same model
    _, _, short = fit_logistic_regression(x, y, 2, [1e-6], weights=None, max_iter=2, tolerance=1e-12)
    assert not short["converged"] and short["iterations"] == 2


def test_at_full_labels_every_seed_gives_the_same_probe(tmp_path):
    """The label subset is the seed's only effect on the probe; at 100 % it is the same for every
    seed, so every seed gives the same result (and the grid runs one)."""
    from protocols.grid import job_seeds

    cache = fake_downstream(tmp_path)
    spec = load_protocol("linear_probe")
    feats = _separable_features(cache, noise=2.0)
    results = [run_probe(feats, cache, spec, 1.0, seed=s, device=CPU) for s in (0, 1, 2)]
    assert results[0]["metrics"] == results[1]["metrics"] == results[2]["metrics"]
    assert job_seeds(spec, 1.0) == [0] and job_seeds(spec, 0.1) == spec.seeds


def test_the_test_split_never_influences_the_l2_choice_or_the_validation_scores(tmp_path):
    """The L2 strength is chosen on validation, and validation means the val rows: spoiling the test
    rows' features changes the test metrics and nothing else. The data make the choice matter: noisy
    features at 10 % labels, where the validation scores differ across the grid, and a test split of
    another size than the validation split (half its labels removed), so val rows taken from the test
    split or a choice made on test predictions both show."""
    cache = fake_downstream(tmp_path, n_subjects=30)
    test_rows = cache.labelled_positions("test")
    cache.index.loc[cache.index.index[test_rows[::2]], "label"] = -1  # unlabelled: out of every split
    test_rows = cache.labelled_positions("test")
    val_rows = cache.labelled_positions("val")
    assert len(test_rows) != len(val_rows)
    spec = load_protocol("linear_probe")
    feats = _separable_features(cache, noise=2.5)
    out = run_probe(feats, cache, spec, 0.1, seed=2, device=CPU)
    train = out["train"]
    assert len(set(train["val_scores"].values())) > 2  # the grid's strengths score differently on validation
    assert train["val_scores"][f"{train['l2']:g}"] == max(train["val_scores"].values())
    assert train["feature_dim"] == feats.shape[1] and train["device"] == "cpu" and train["constant_features"] == 0
    assert out["metrics"]["val"]["n"] == len(val_rows) and out["metrics"]["test"]["n"] == len(test_rows)
    for draw in range(3):
        spoilt = feats.copy()
        spoilt[test_rows] = np.random.default_rng(10 + draw).normal(0, 3, size=(len(test_rows), feats.shape[1]))
        other = run_probe(spoilt, cache, spec, 0.1, seed=2, device=CPU)
        assert other["train"]["l2"] == train["l2"] and other["train"]["val_scores"] == train["val_scores"]
        assert other["metrics"]["val"] == out["metrics"]["val"]
        assert other["metrics"]["test"] != out["metrics"]["test"]


def test_standardizing_makes_the_probe_blind_to_each_features_unit_and_origin(tmp_path):
    """The probe standardizes each feature on the training subset, so a feature's unit and origin do not
    matter: the informative features shrunk to 1e-4 of their size and shifted, the noise ones blown up
    1e3×, give the same choice and the same scores. Without standardizing (or with a wrong one) the L2
    penalty would silence the shrunk features."""
    cache = fake_downstream(tmp_path, n_subjects=30)
    spec = load_protocol("linear_probe")
    rng = np.random.default_rng(5)
    feats = np.hstack([_separable_features(cache, dim=4, noise=1.5),
                       rng.normal(size=(len(cache.index), 4)).astype(np.float32)])
    base = run_probe(feats, cache, spec, 0.1, seed=1, device=CPU)
    unit = np.array([1e-4, 1e-4, 1e-4, 1e-4, 1e3, 1e3, 1e3, 1e3], dtype=np.float32)
    origin = np.array([3e-4, -1e-4, 0.0, 2e-4, 500.0, -800.0, 0.0, 100.0], dtype=np.float32)
    moved = run_probe(feats * unit + origin, cache, spec, 0.1, seed=1, device=CPU)
    assert base["metrics"]["test"]["macro_f1"] > 0.6 and moved["train"]["constant_features"] == 0
    assert moved["train"]["l2"] == base["train"]["l2"]
    for split in ("val", "test"):
        assert moved["metrics"][split]["macro_f1"] == pytest.approx(base["metrics"][split]["macro_f1"], abs=0.02)


def _skewed(root):
    """The fake planes with class 0 ten times as frequent as each other class in the train split."""
    cache = fake_downstream(root, n_subjects=40)
    labels = cache.index["label"].to_numpy()
    train = cache.labelled_positions("train")
    rare = [p for c in range(1, cache.num_classes) for i, p in enumerate(train[labels[train] == c]) if i % 10]
    cache.index.loc[cache.index.index[rare], "label"] = -1  # out of every split
    return cache


def test_a_strength_that_cannot_fit_loses_on_validation(tmp_path):
    """The choice is the validation maximum, not the grid's first (strongest) entry: on a skewed training
    set without class weights, a crushing L2 leaves only the biases, which predict the common class."""
    cache = _skewed(tmp_path)
    spec = load_protocol("linear_probe", {"probe": {"l2_grid": [100.0, 1e-4], "class_weighted": False}})
    train = run_probe(_separable_features(cache, noise=1.0), cache, spec, 1.0, seed=0, device=CPU)["train"]
    assert train["l2"] == 1e-4 and train["val_scores"]["100"] < train["val_scores"]["0.0001"] - 0.2, train


def test_class_weights_make_a_rare_class_count_as_much_as_a_common_one(tmp_path):
    """With `class_weighted` the loss weighs each class by its inverse frequency in the label subset, so a
    class with few training images is not traded away for the common one: on a training set where class
    0 is 10× as frequent as each other, weighting raises the rare classes' recall (and lowers
    class 0's); without it, class 0 takes more of the predictions."""
    cache = _skewed(tmp_path)
    labels = cache.index["label"].to_numpy()
    counts = np.bincount(labels[cache.labelled_positions("train")], minlength=cache.num_classes)
    assert counts[0] >= 8 * counts[1:].max() and counts.min() > 0
    feats = _separable_features(cache, noise=2.5)
    weighted = run_probe(feats, cache, load_protocol("linear_probe"), 1.0, seed=0, device=CPU)
    plain = run_probe(feats, cache, load_protocol("linear_probe", {"probe": {"class_weighted": False}}), 1.0,
                      seed=0, device=CPU)

    def recall(out, k):
        cm = np.array(out["metrics"]["test"]["confusion_matrix"])
        return cm[k, k] / cm[k].sum()

    def predicted_zero(out):
        return np.array(out["metrics"]["test"]["confusion_matrix"])[:, 0].sum()

    assert predicted_zero(weighted) < predicted_zero(plain)
    assert (np.mean([recall(weighted, k) for k in range(1, cache.num_classes)])
            > np.mean([recall(plain, k) for k in range(1, cache.num_classes)]))


def test_without_standardizing_the_features_are_used_as_they_are(tmp_path):
    """`features.standardize = false`: no feature is scaled, so none is counted as constant, and a
    feature's unit matters again (the L2 penalty silences a shrunk one)."""
    cache = fake_downstream(tmp_path)
    plain = load_protocol("linear_probe", {"features": {"standardize": False}, "probe": {"l2_grid": [1.0]}})
    feats = _separable_features(cache)
    assert run_probe(feats, cache, plain, 1.0, seed=0, device=CPU)["train"]["constant_features"] == 0
    shrunk = run_probe(feats * 1e-4, cache, plain, 1.0, seed=0, device=CPU)
    standardized = run_probe(feats * 1e-4, cache, load_protocol("linear_probe", {"probe": {"l2_grid": [1.0]}}), 1.0,
                             seed=0, device=CPU)
    assert shrunk["metrics"]["test"]["macro_f1"] < standardized["metrics"]["test"]["macro_f1"] - 0.2
