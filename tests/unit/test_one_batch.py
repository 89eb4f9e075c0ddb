"""The one-batch check (benchmark.pretrain.one_batch, `sslbench methods NAME --one-batch`): the method as
pretraining builds it, on two fixed views, so the loss moves only through the optimiser."""
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.pretrain.one_batch import fit_one_batch, pool_batch
from tests.fake_source import tiny_pool

TINY = Path(__file__).resolve().parents[1] / "e2e" / "tiny_preset.toml"
FAST = {"memory_format": "contiguous"}  # the layout is the CLI's business (the preset's); NCHW runs faster here


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    pool = tiny_pool(tmp_path_factory.mktemp("pool"))
    return pool_batch(pool.frames, np.arange(len(pool.frames)), size=16)


def test_a_zero_rate_leaves_the_loss_where_it_is_and_adam_lowers_it(frames):
    # The same views every step: with a zero rate (and no weight decay) nothing moves, so every loss
    # is the first, to rounding; a real optimiser lowers it.
    still = fit_one_batch("simclr", frames, 32, steps=3, hparams={"lr": 0.0, "weight_decay": 0.0}, **FAST)
    assert still.optimizer == "recipe" and len(still.losses) == 3
    np.testing.assert_allclose(still.losses, still.losses[0], rtol=1e-5)
    fit = fit_one_batch("simclr", frames, 32, steps=8, adam_lr=1e-3, **FAST)
    assert fit.optimizer == "adam (lr 0.001)" and fit.losses[0] == pytest.approx(still.losses[0], rel=1e-5)
    assert fit.change < -0.1, fit.line()  # SimCLR's loss on 16 noise frames falls by more than 10 % in 8 steps
    assert "→" in fit.line() and f"{fit.change:+.0%}" in fit.line()


def test_every_kind_of_view_runs(frames):
    ae = fit_one_batch("ae", frames, 32, steps=2, **FAST)  # a clean target view besides the augmented one
    byol = fit_one_batch("byol", frames, 32, steps=2, **FAST)  # a momentum target
    assert all(np.isfinite(ae.losses)) and all(np.isfinite(byol.losses))


def test_too_few_steps_and_a_missing_method_are_named(frames, capsys):
    with pytest.raises(UserError, match="at least 2"):
        fit_one_batch("simclr", frames, 32, steps=1)
    assert main(["methods", "--one-batch"]) == 2
    assert "needs a method" in capsys.readouterr().err


def test_the_command_prints_the_recipe_and_adam(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["methods", "vicreg", "--one-batch", "--preset", str(TINY), "--steps", "2", "--batch-size", "8",
                 "--set", "lr=0.1", "--adam", "1e-3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "vicreg on one fixed batch of 8 frames" in out and "{'lr': 0.1}" in out
    assert "vicreg, recipe: loss" in out and "vicreg, adam (lr 0.001): loss" in out
