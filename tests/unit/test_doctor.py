"""`sslbench doctor`: rows run, fail or are skipped independently, and the table says which."""
from __future__ import annotations

import pytest
import torch

from benchmark.cli import main
from benchmark.doctor import (
    CHECKS,
    Check,
    DoctorContext,
    Figures,
    Sizes,
    exit_status,
    render_markdown,
    run_checks,
    skip_reason,
)


def _context(tmp_path) -> DoctorContext:
    return DoctorContext(torch.device("cpu"), Sizes.for_device(False), tmp_path)


def _boom(ctx: DoctorContext) -> Figures:
    raise RuntimeError("the pinned buffer\nwas gone")


def _never(ctx: DoctorContext) -> Figures:
    raise AssertionError("a GPU row ran on a CPU")


def test_a_row_that_raises_is_reported_failed_and_the_others_still_run(tmp_path):
    calls = []

    def fine(ctx: DoctorContext) -> Figures:
        calls.append(ctx.device.type)
        return Figures(views_per_s=1234.5, ratio=0.97, detail="steady")

    checks = [Check("first", "a working path", "any", fine), Check("broken", "a broken path", "any", _boom),
              Check("gpu", "a GPU path", "cuda", _never), Check("last", "another working path", "any", fine)]
    seen = []
    rows = run_checks(checks, _context(tmp_path), progress=False, on_row=lambda so_far: seen.append(len(so_far)))
    assert seen == [1, 2, 3, 4]  # reported after every row, so a doctor stopped midway keeps its rows
    assert [r.status for r in rows] == ["ok", "failed", "skipped", "ok"]
    assert calls == ["cpu", "cpu"]
    assert rows[1].detail == "RuntimeError: the pinned buffer was gone"  # one line, with the error's type
    assert "CUDA" in rows[2].detail and rows[2].seconds is None
    assert rows[0].views_per_s == 1234.5 and rows[0].ratio == 0.97 and rows[0].seconds is not None
    assert exit_status(rows) == 1
    assert exit_status([rows[0], rows[2], rows[3]]) == 0  # skipped rows do not fail the doctor

    text = render_markdown(rows, {"device": "cpu"})
    for check in checks:
        assert f"| {check.path} " in text
    assert "RuntimeError: the pinned buffer was gone" in text and "1,234" in text and "0.97" in text
    assert "2 of 3 rows that ran are ok, 1 failed; 1 skipped" in text


def test_rows_are_skipped_by_device_with_the_reason():
    gpu_rows = [c for c in CHECKS if c.needs == "cuda"]
    cpu_rows = [c for c in CHECKS if c.needs == "cpu"]
    assert gpu_rows and cpu_rows
    assert all(skip_reason(c, cuda=False) and skip_reason(c, cuda=True) is None for c in gpu_rows)
    assert all(skip_reason(c, cuda=True) and skip_reason(c, cuda=False) is None for c in cpu_rows)
    assert all(skip_reason(c, cuda=x) is None for c in CHECKS if c.needs == "any" for x in (False, True))
    assert len({c.id for c in CHECKS}) == len(CHECKS)


def test_an_unknown_row_is_named_with_the_known_ones(capsys):
    assert main(["doctor", "--only", "warp-drive"]) == 2
    err = capsys.readouterr().err
    assert "warp-drive" in err and "resident-bf16" in err and "ddp" in err


@pytest.mark.parametrize("flag,value,message", [("--steps", "2", "--steps must be at least 4"),
                                                 ("--backbone", "resnet99", "choose one of resnet18"),
                                                 ("--resolution", "16", "--resolution must be at least 32"),
                                                 ("--batch-size", "1", "--batch-size must be at least 2")])
def test_bad_sizes_are_refused_before_any_row_runs(capsys, flag, value, message):
    assert main(["doctor", "--only", "cpu", flag, value]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("cuda", [False, True])
def test_the_pretraining_pool_holds_every_step_in_one_epoch(cuda):
    sizes = Sizes.for_device(cuda)  # the GPU sizes only read the standard preset: no GPU needed
    if cuda:
        from protocols.presets import load_preset

        standard = load_preset("standard")
        assert (sizes.backbone, sizes.resolution) == (standard["backbone"], standard["resolution"])
    opts = sizes.pool_options()
    assert opts["subjects"] * opts["videos_per_subject"] * opts["frames_per_video"] >= sizes.steps * sizes.batch_size


def test_rows_not_run_are_told_apart_from_skipped_ones():
    from benchmark.doctor import Row

    rows = [Row("a", "a path", "ok"), Row("b", "a GPU path", "skipped", detail="no CUDA"),
            Row("c", "a slow path", "not run", detail="the doctor stopped before this row")]
    text = render_markdown(rows, {"device": "cpu"})
    assert "1 of 1 rows that ran are ok; 1 skipped; 1 not run (the doctor stopped early)" in text


@pytest.mark.parametrize("cuda", [False, True])
def test_pretraining_rows_train_with_the_ceilings_optimiser_not_the_methods(tmp_path, cuda):
    """The rows measure a step's cost against the ceiling's step. With VICReg's own rate (0.3, meant for
    LARS) under plain SGD, every GPU pretraining row stopped on an infinite loss at step 5 on an H200."""
    from benchmark.pretrain.ceiling import RATE_HPARAMS, RATE_LR

    ctx = DoctorContext(torch.device("cpu"), Sizes.for_device(cuda), tmp_path)
    for precision in ("32", "bf16-mixed"):
        hparams = ctx.pretrain_config(precision).hparams
        assert {k: hparams[k] for k in RATE_HPARAMS} == {"optimizer": "sgd", "lr": RATE_LR, "warmup": 0.0}
    assert RATE_LR <= 0.01
