"""Pretraining survives a kill: a killed `sslbench pretrain` resumes from last.ckpt and ends where an
uninterrupted run ends; a finished run is not redone; a non-finite loss stops the run at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import benchmark.pretrain.run
from benchmark.cli import build_parser
from benchmark.cli.pretrain import build_config
from benchmark.data.cache import prepare
from benchmark.data.spec import parse_dataset_spec
from benchmark.kill_points import ENV, SIGNAL_ENV
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.module import NonFiniteLossError
from benchmark.pretrain.run import pretrain
from methods.base import SSLMethod
from tests.fake_source import tiny_pool

# 3 videos × 16 frames, batch 8 → 6 steps a pass over the pool, 12 steps (two passes); a checkpoint every 2.
ARGS = ["pretrain", "--method", "vicreg", "--dataset", "synthetic", "-o", "subjects=3", "-o", "videos_per_subject=1",
        "-o", "frames_per_video=16", "--resolution", "32", "--batch-size", "8", "--steps", "12",
        "--set", "proj_hidden_dim=32", "--set", "proj_output_dim=32", "--set", "warmup=0.5",
        "--positives", "temporal:2", "--checkpoint-every", "2", "--seed", "3", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_run_resumes_to_the_same_encoder_and_a_finished_run_is_not_redone(tmp_path, monkeypatch):
    cache_dir, killed_dir, clean_dir = tmp_path / "cache", tmp_path / "killed", tmp_path / "clean"
    args = build_parser().parse_args([*ARGS, "--cache-dir", str(cache_dir), "--run-dir", str(killed_dir)])
    cfg, spec, options = build_config(args)
    pool = prepare(parse_dataset_spec(spec, **options), "pretrain", cache_dir=cache_dir, progress=False)
    cli = [sys.executable, "-m", "benchmark", *ARGS, "--cache-dir", str(cache_dir), "--run-dir", str(killed_dir)]
    # One thread in the subprocesses too (see _one_thread): the same arithmetic as here.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # SIGKILL at the end of step 3: the checkpoint of step 2 is the last one on disk.
    killed = subprocess.run(cli, env={**env, ENV: "pretrain_step:3"}, capture_output=True, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run,) = killed_dir.iterdir()
    assert not (run / "encoder.safetensors").exists()
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 2

    # The rerun resumes at step 3: its 10th step is step 12, the last (a restart would be at step 10).
    again = subprocess.run(cli, env={**env, ENV: "pretrain_step:10"}, capture_output=True, text=True, timeout=240)
    assert again.returncode == -signal.SIGKILL, again.stderr[-3000:]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 12 and not (run / "encoder.safetensors").exists()

    resumed = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = Path(resumed.stdout.strip().splitlines()[-1])
    assert final == run / "encoder.safetensors" and final.exists()

    # The same config, uninterrupted, in this process.
    reference = pretrain(cfg, pool, clean_dir, progress=False, checkpoint_every=2)
    a, b = _state(final), _state(reference)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    from benchmark.checkpoint import read_meta

    meta = read_meta(final)
    assert meta["method"] == "vicreg" and meta["positives"] == "temporal:2" and meta["steps"] == 12
    assert meta["data_fingerprint"] == pool.fingerprint and meta["config_key"] == cfg.key(pool.fingerprint)
    assert meta["hparams"]["proj_hidden_dim"] == 32

    # A finished run is a no-op: same path, file untouched, no training.
    mtime = final.stat().st_mtime_ns
    monkeypatch.setattr(benchmark.pretrain.run, "_train", _no_training)
    again = pretrain(cfg, pool, killed_dir, progress=False)
    assert again == final and final.stat().st_mtime_ns == mtime


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_saves_the_step_under_way_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    cache_dir, run_dir, clean_dir = tmp_path / "cache", tmp_path / "stopped", tmp_path / "clean"
    args = build_parser().parse_args([*ARGS, "--cache-dir", str(cache_dir), "--run-dir", str(run_dir)])
    cfg, spec, options = build_config(args)
    pool = prepare(parse_dataset_spec(spec, **options), "pretrain", cache_dir=cache_dir, progress=False)
    cli = [sys.executable, "-m", "benchmark", *ARGS, "--cache-dir", str(cache_dir), "--run-dir", str(run_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # SIGTERM during step 3: the step ends, its state is saved (not only step 2's), the process says how to resume.
    stopped = subprocess.run(cli, env={**env, ENV: "pretrain_step:3", SIGNAL_ENV: "TERM"}, capture_output=True,
                             text=True, timeout=240)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert "stopped by SIGTERM" in stopped.stderr and "sslbench pretrain --method vicreg" in stopped.stderr
    (run,) = run_dir.iterdir()
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 3

    # The rerun resumes at step 4: its 9th step is step 12, the last.
    again = subprocess.run(cli, env={**env, ENV: "pretrain_step:9"}, capture_output=True, text=True, timeout=240)
    assert again.returncode == -signal.SIGKILL, again.stderr[-3000:]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 12
    resumed = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = run / "encoder.safetensors"
    reference = pretrain(cfg, pool, clean_dir, progress=False, checkpoint_every=2)
    a, b = _state(final), _state(reference)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def _no_training(*args, **kwargs):
    raise AssertionError("a finished run must not train again")


class _NaNAfter(SSLMethod):
    """A method whose loss becomes NaN from its 6th call on."""

    name = "nan_after_five"
    family = "information"
    views = "two_augmented"
    defaults = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0, "warmup": 0.0, "batch_size": 4}

    def __init__(self, encoder, **hp):
        super().__init__(encoder, **hp)
        self.head = nn.Linear(encoder.feat_dim, 8)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def loss(self, views):
        self.calls += 1
        z0, z1 = (self.head(self.encoder(v)) for v in views)
        loss = (z0 - z1).pow(2).mean() + 1e-3 * z0.pow(2).mean()
        return loss * float("nan") if self.calls.item() > 5 else loss


@pytest.mark.timeout(120)
def test_non_finite_loss_stops_with_step_method_and_hint_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import methods.registry

    monkeypatch.setattr(methods.registry, "get_method", lambda name: _NaNAfter)
    cfg = PretrainConfig(method="nan_after_five", resolution=32, steps=18, batch_size=4)
    with pytest.raises(NonFiniteLossError) as err:
        pretrain(cfg, tiny_pool(tmp_path / "pool"), tmp_path / "runs", progress=False, checkpoint_every=2)
    message = str(err.value)
    assert "nan_after_five" in message and "at step 6" in message
    assert "Lower the learning rate" in message and "fp32" in message
    (run,) = (tmp_path / "runs").iterdir()
    assert not (run / "encoder.safetensors").exists()
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 4  # the checkpoint of step 4, before the NaN at step 6
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point())
