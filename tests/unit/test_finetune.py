import numpy as np
import pytest
import torch

import protocols.finetune as ft
from protocols.spec import load_protocol
from tests.unit.downstream_fakes import TinyEncoder, fake_downstream

CPU = torch.device("cpu")
# Small training; the head's probe keeps the protocol's L-BFGS limit (1,000): the fake data's fits take
# 189–211 iterations depending on the CPU's arithmetic path (MKL on AVX-512, AVX2 or SSE4.2), so a limit
# of 200 made "converged" a property of the machine.
SMALL = {"train": {"epochs": 3, "batch_size": 16, "min_steps_per_epoch": 3, "warmup_epochs": 1}}


def _spec():
    return load_protocol("finetune", SMALL)


def test_finetune_trains_selects_on_validation_and_scores_test_once(tmp_path, monkeypatch):
    cache = fake_downstream(tmp_path)
    splits_scored = []
    real = ft.predict

    def spy(model, frames, positions, batch_size, device):
        splits_scored.append(cache.index["split"].iloc[positions[0]])
        return real(model, frames, positions, batch_size, device)

    monkeypatch.setattr(ft, "predict", spy)
    spec = _spec()
    lrs = spec.settings["train"]["lr_grid"]
    out = ft.run_finetune(TinyEncoder, cache, spec, 1.0, seed=0, device=CPU, progress=False)
    # epoch 0 (the probe-initialised model), then every epoch of every lr on val; test once, at the end
    assert splits_scored == ["val"] * (1 + 3 * len(lrs)) + ["test"]
    hist = out["train"]["val_history"]
    assert set(hist) == {f"{lr:g}" for lr in lrs} and all(len(h) == 3 for h in hist.values())
    scores = {(None, 0): out["train"]["val_epoch0"]}
    scores.update({(float(lr), e + 1): v for lr, h in hist.items() for e, v in enumerate(h)})
    best = max(scores.values())
    assert (out["train"]["selected_lr"], out["train"]["selected_epoch"]) == \
        next(k for k, v in scores.items() if v == best)  # the first best, epoch 0 first
    assert out["metrics"]["val"]["macro_f1"] == pytest.approx(best, abs=1e-6)
    assert out["train"]["n_train"] == int(((cache.index["split"] == "train") & (cache.index["label"] >= 0)).sum())


def test_small_subsets_still_get_min_steps_per_epoch(tmp_path):
    cache = fake_downstream(tmp_path)
    out = ft.run_finetune(TinyEncoder, cache, _spec(), 0.01, seed=0, device=CPU, progress=False)
    assert out["train"]["n_train"] == 3  # one per class (label_fraction guarantees it)
    assert out["train"]["steps_per_epoch"] == 3


def test_epoch_order_is_a_function_of_seed_and_epoch_and_cycles_small_subsets():
    a = ft.epoch_order(5, steps=3, batch_size=4, seed=1, epoch=2)
    assert a.shape == (3, 4) and np.array_equal(a, ft.epoch_order(5, 3, 4, 1, 2))
    assert not np.array_equal(a, ft.epoch_order(5, 3, 4, 1, 3))
    assert sorted(a.ravel()[:5]) == [0, 1, 2, 3, 4]  # a full permutation before any repeat


def test_a_killed_finetune_resumes_to_the_same_result(tmp_path, monkeypatch):
    cache = fake_downstream(tmp_path)
    spec = _spec()
    reference = ft.run_finetune(TinyEncoder, cache, spec, 1.0, seed=2, device=CPU, progress=False)

    state = tmp_path / "state.pt"
    real, calls = ft.predict, []

    def dies_in_epoch_two(*args, **kw):
        calls.append(1)
        if len(calls) == 5:  # epoch 0, then lr 1's epochs 1-3 (each saved): killed in lr 2's epoch 1
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(ft, "predict", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        ft.run_finetune(TinyEncoder, cache, spec, 1.0, seed=2, state_path=state, device=CPU,
                        progress=False, save_every_s=0)
    assert state.exists() and not list(tmp_path.glob(".state.pt.tmp-*"))
    monkeypatch.setattr(ft, "predict", real)
    resumed = ft.run_finetune(TinyEncoder, cache, spec, 1.0, seed=2, state_path=state, device=CPU,
                              progress=False, save_every_s=0)
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["train"]["val_history"] == reference["train"]["val_history"]
    assert resumed["train"]["selected_lr"] == reference["train"]["selected_lr"]


def test_augmentation_keeps_shape_and_is_seeded():
    aug = ft.build_augment(load_protocol("finetune").settings["augment"], 16)
    x = torch.rand(4, 1, 16, 16)
    torch.manual_seed(0)
    a = aug(x)
    torch.manual_seed(0)
    assert a.shape == x.shape and torch.equal(a, aug(x)) and not torch.equal(a, x)


@pytest.mark.parametrize("standardize", [False, True])
def test_the_head_starts_as_the_linear_probe_of_the_initial_encoder(tmp_path, standardize):
    """LP-FT: before any fine-tuning step, the model's predictions are the probe's (fitted on the raw
    features, or on standardised ones with the standardisation folded into the head), so epoch 0
    scores exactly what the probe scores."""
    from protocols.linear_probe import fit_logistic_regression, standardizer

    cache = fake_downstream(tmp_path)
    spec = load_protocol("finetune", {**SMALL, "head": {"standardize": standardize}})
    tr = ft.training_subset(cache, 1.0, 0)
    val = cache.labelled_positions("val")
    labels = cache.index["label"].to_numpy()
    torch.manual_seed(0)
    model = ft.Classifier(TinyEncoder(), cache.num_classes)
    report = ft.linear_probe_head(model, cache.frames, tr, val, labels, cache.class_names, spec.settings["head"],
                                  True, "macro_f1", 64, CPU)
    assert report["l2"] in spec.settings["head"]["l2_grid"] and report["solver"]["converged"]
    feats = ft.extract(model.encoder, cache.frames, np.concatenate([tr, val]), 64, CPU)
    mean, scale, _ = standardizer(feats, np.arange(len(tr)))
    if not standardize:
        mean, scale = torch.zeros_like(mean), torch.ones_like(scale)
    weights = torch.tensor(ft.class_weights(labels[tr], cache.num_classes), dtype=torch.float32)
    grid = sorted(spec.settings["head"]["l2_grid"], reverse=True)  # as the head is fitted: the whole grid at once
    w, b, _ = fit_logistic_regression((feats[:len(tr)] - mean) / scale, torch.from_numpy(labels[tr]),
                                      cache.num_classes, grid, weights=weights,
                                      max_iter=spec.settings["head"]["max_iter"],
                                      tolerance=spec.settings["head"]["tolerance"])
    k = grid.index(report["l2"])
    probe_logits = ((feats[len(tr):].double() - mean) / scale) @ w[k].double() + b[k].double()
    with torch.no_grad():
        head_logits = model(ft._batch(cache.frames, val, CPU)).double()
    assert torch.allclose(head_logits, probe_logits, rtol=1e-4, atol=1e-5 * float(probe_logits.abs().max()))
    assert np.array_equal(ft.predict(model, cache.frames, val, 64, CPU), probe_logits.argmax(1).numpy())


class ScaledEncoder(torch.nn.Module):
    """TinyEncoder with its features multiplied by `factor` (EfficientNet-Lite0's pooled features have
    a standard deviation of about 0.03)."""

    feat_dim = TinyEncoder.feat_dim

    def __init__(self, factor: float):
        super().__init__()
        self.encoder, self.factor = TinyEncoder(), factor

    def forward(self, x):
        return self.encoder(x) * self.factor


def test_the_head_does_not_carry_one_over_the_feature_scale_into_the_encoders_gradients(tmp_path):
    """A head fitted on standardised features and folded (protocol v2) has weights ∝ 1/σ: features 100×
    smaller give a head 100× larger, and the encoder's gradients through it grow by as much. The head
    of the current protocol, fitted on the raw features, does not grow when the features shrink."""
    cache = fake_downstream(tmp_path)
    labels = cache.index["label"].to_numpy()
    tr, val = ft.training_subset(cache, 1.0, 0), cache.labelled_positions("val")

    def head_gain(standardize: bool, factor: float) -> float:
        head = {**load_protocol("finetune").settings["head"], "standardize": standardize}
        torch.manual_seed(0)
        model = ft.Classifier(ScaledEncoder(factor), cache.num_classes)
        ft.linear_probe_head(model, cache.frames, tr, val, labels, cache.class_names, head, True, "macro_f1", 64, CPU)
        return float(model.head.weight.detach().abs().max())

    assert load_protocol("finetune").settings["head"]["standardize"] is False
    assert head_gain(True, 0.01) == pytest.approx(100 * head_gain(True, 1.0), rel=1e-3)
    assert head_gain(False, 0.01) <= head_gain(False, 1.0) < head_gain(True, 1.0)


def test_finetune_is_not_chosen_over_its_probe_start_unless_validation_prefers_it(tmp_path):
    cache = fake_downstream(tmp_path)
    out = ft.run_finetune(TinyEncoder, cache, _spec(), 0.1, seed=1, device=CPU, progress=False)
    best_trained = max(v for h in out["train"]["val_history"].values() for v in h)
    if out["train"]["selected_epoch"] == 0:
        assert out["train"]["val_epoch0"] >= best_trained and out["train"]["selected_lr"] is None
    else:
        assert best_trained > out["train"]["val_epoch0"]
    assert out["metrics"]["val"]["macro_f1"] == pytest.approx(max(best_trained, out["train"]["val_epoch0"]), abs=1e-6)


def test_a_finetune_killed_at_an_epoch_end_resumes_from_its_saved_state(tmp_path):
    """SIGKILL at the end of the second fine-tune epoch (state saved every epoch), then a rerun: the
    same result as an uninterrupted job."""
    import json
    import os
    import subprocess
    import sys

    state = tmp_path / "state.pt"
    script = tmp_path / "job.py"
    script.write_text(
        "import json, sys, torch\n"
        "import protocols.finetune as ft\n"
        "from protocols.spec import load_protocol\n"
        "from tests.unit.downstream_fakes import TinyEncoder, fake_downstream\n"
        "torch.set_num_threads(1)\n"
        f"cache = fake_downstream({str(tmp_path / 'data')!r})\n"
        f"spec = load_protocol('finetune', {SMALL!r})\n"
        "out = ft.run_finetune(TinyEncoder, cache, spec, 1.0, seed=4, state_path=sys.argv[1] or None,\n"
        "                      device=torch.device('cpu'), progress=True, save_every_s=0)\n"
        "print(json.dumps(out['metrics']['test']))\n")
    repo = str(__import__("pathlib").Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": repo, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, str(script), str(state)], capture_output=True, text=True, cwd=repo,
                            env={**env, "SSLBENCH_TEST_KILL_AT": "finetune_epoch:2"}, timeout=600)
    assert killed.returncode == -9 and state.exists(), killed.stderr[-2000:]
    resumed = subprocess.run([sys.executable, str(script), str(state)], capture_output=True, text=True, cwd=repo,
                             env=env, timeout=600)
    clean = subprocess.run([sys.executable, str(script), ""], capture_output=True, text=True, cwd=repo,
                           env=env, timeout=600)
    assert resumed.returncode == 0 and clean.returncode == 0, resumed.stderr[-2000:] + clean.stderr[-2000:]
    assert "resuming fine-tune at lr 0.01, epoch 2" in resumed.stderr  # it continued, it did not start over
    assert json.loads(resumed.stdout) == json.loads(clean.stdout)
