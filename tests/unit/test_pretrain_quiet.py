"""A pretraining run's output carries the run's own progress, warnings and errors, not Lightning's
banners and advertising tips nor torch's LeafSpec deprecation (tripped inside Lightning on every run);
and it leaves Lightning's log levels as it found them."""
from __future__ import annotations

import logging

import pytest
import pytorch_lightning  # noqa: F401  (it sets its loggers' level on import: read it after)

import benchmark.backbones
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.run import pretrain
from tests.fake_source import tiny_pool
from tests.unit.downstream_fakes import TinyEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pretraining_hides_lightning_tips_and_the_leafspec_warning(tmp_path, monkeypatch, caplog, recwarn):
    monkeypatch.setattr(benchmark.backbones, "build_backbone", lambda *a, **k: TinyEncoder())
    lightning = logging.getLogger("pytorch_lightning")
    level = lightning.level
    caplog.set_level(logging.DEBUG)  # everything that reaches the root logger is recorded
    cfg = PretrainConfig(method="vicreg", resolution=16, steps=2, batch_size=4,
                         hparams={"proj_hidden_dim": 16, "proj_output_dim": 8})
    assert pretrain(cfg, tiny_pool(tmp_path / "pool"), tmp_path / "runs", progress=False).exists()

    lightning_records = [r for r in caplog.records if r.name.startswith(("pytorch_lightning", "lightning_fabric"))]
    assert not [r.getMessage() for r in lightning_records if r.levelno < logging.WARNING]
    assert not [str(w.message) for w in recwarn if "LeafSpec" in str(w.message)]
    assert lightning.level == level  # restored: a later caller's logging is its own business
