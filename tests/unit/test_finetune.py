import numpy as np
import pytest
import torch

import protocols.finetune as ft
from protocols.spec import load_protocol
from tests.unit.downstream_fakes import TinyEncoder, fake_downstream

CPU = torch.device("cpu")
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
    out = ft.run_finetune(TinyEncoder, cache, _spec(), 1.0, seed=0, device=CPU, progress=False)
    assert splits_scored == ["val", "val", "val", "test"]  # test once, after selection
    hist = out["train"]["val_history"]
    assert len(hist) == 3 and out["train"]["selected_epoch"] == int(np.argmax(hist))
    assert out["metrics"]["val"]["macro_f1"] == pytest.approx(max(hist), abs=1e-6)
    assert out["train"]["n_train"] == int(((cache.index["split"] == "train") & (cache.index["label"] >= 0)).sum())
    assert 0 <= out["metrics"]["test"]["macro_f1"] <= 1


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
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after epoch 1's state was saved
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


def test_augmentation_keeps_shape_and_is_seeded():
    aug = ft.build_augment(load_protocol("finetune").settings["augment"], 16)
    x = torch.rand(4, 1, 16, 16)
    torch.manual_seed(0)
    a = aug(x)
    torch.manual_seed(0)
    assert a.shape == x.shape and torch.equal(a, aug(x)) and not torch.equal(a, x)
