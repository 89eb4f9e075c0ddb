"""The end of every pretraining run (benchmark.pretrain.finish.finish_encoder): BatchNorm statistics
estimated on the clean pool, the diagnostics measured against the network the run started from, written
to diagnostics.json and said on stderr with a warning per problem."""
import copy
import json

import torch

from benchmark.backbones import build_backbone
from benchmark.pretrain import diagnostics as dg
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.finish import finish_encoder
from benchmark.pretrain.sampler import pretraining_positions
from tests.fake_source import tiny_pool

BACKBONE, RES = "efficientnet_lite0", 32


def _with_pool_statistics(state: dict, frames) -> torch.nn.Module:
    net = build_backbone(BACKBONE, init="random")
    net.load_state_dict(state)
    dg.estimate_batchnorm(net, frames, RES, device=torch.device("cpu"))
    return net


def test_a_trained_encoder_is_measured_against_where_it_started(tmp_path, capsys):
    pool = tiny_pool(tmp_path / "pool")
    positions = pretraining_positions(pool)
    frames = pool.frames[dg.evenly_spaced(positions, dg.BATCHNORM_FRAMES)]
    data = dg.diagnostic_data(pool.index, pool.frames, positions)
    torch.manual_seed(3)
    encoder = build_backbone(BACKBONE, init="random")
    start = copy.deepcopy(encoder.state_dict())
    with torch.no_grad():  # "training": every learned weight moves by ~1e-4 of its scale
        for p in encoder.parameters():
            p.mul_(1 + 1e-4 * torch.randn_like(p))
    moved = copy.deepcopy(encoder.state_dict())
    cfg = PretrainConfig(method="simclr", backbone=BACKBONE, resolution=RES, seed=0, steps=1).validate()

    diag = finish_encoder(encoder, start, cfg, pool, positions, tmp_path)

    # The encoder keeps its weights and gets the pool's BatchNorm statistics.
    expected_after = _with_pool_statistics(moved, frames)
    for name, value in expected_after.state_dict().items():
        torch.testing.assert_close(encoder.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    # "before" is the starting network given the same statistics, "after" the finished one.
    assert diag["before"] == dg.snapshot(_with_pool_statistics(start, frames), data, RES)
    assert diag["after"] == dg.snapshot(encoder, data, RES)
    assert diag["before"] != diag["after"]
    assert diag["encoder_change"] == round(dg.encoder_change(start, encoder.state_dict()), 6) > 0
    assert diag["frames"] == len(data.frames) and diag["knn"] == {"k": dg.KNN_K, "temperature": dg.KNN_TEMPERATURE}
    # A change of 1e-4 is below what a run must move: the problem is found, written and said.
    assert diag["problems"] == dg.problems(diag) and any("did not move" in p for p in diag["problems"])
    text = (tmp_path / "diagnostics.json").read_text()
    assert json.loads(text) == diag and text == json.dumps(diag, indent=1) + "\n"
    err = capsys.readouterr().err
    assert dg.summary_line("simclr", diag) in err
    for problem in diag["problems"]:
        assert f"warning: simclr: {problem}" in err


def test_progress_off_says_nothing(tmp_path, capsys):
    pool = tiny_pool(tmp_path / "pool")
    cfg = PretrainConfig(method="simclr", backbone=BACKBONE, resolution=RES, seed=0, steps=1).validate()
    encoder = build_backbone(BACKBONE, init="random")
    finish_encoder(encoder, copy.deepcopy(encoder.state_dict()), cfg, pool, pretraining_positions(pool), tmp_path,
                   progress=False)
    assert capsys.readouterr().err == ""


def test_a_run_with_frozen_batchnorm_keeps_its_starts_statistics(tmp_path):
    """A continued recipe's `encoder_bn=frozen` trained the weights under the start's BatchNorm statistics:
    the finished encoder keeps them (no estimate on the pool), and so does its `before` snapshot."""
    pool = tiny_pool(tmp_path / "pool")
    positions = pretraining_positions(pool)
    data = dg.diagnostic_data(pool.index, pool.frames, positions)
    torch.manual_seed(4)
    encoder = build_backbone(BACKBONE, init="random")
    start = copy.deepcopy(encoder.state_dict())
    cfg = PretrainConfig(method="simclr", backbone=BACKBONE, resolution=RES, seed=0, steps=1,
                         hparams={"encoder_bn": "frozen"}).validate()
    diag = finish_encoder(encoder, start, cfg, pool, positions, tmp_path, progress=False)
    for name, value in start.items():
        assert torch.equal(encoder.state_dict()[name], value), name
    initial = build_backbone(BACKBONE, init="random")
    initial.load_state_dict(start)
    assert diag["before"] == diag["after"] == dg.snapshot(initial, data, RES)


def test_a_small_weight_change_is_a_problem_unless_the_pool_knn_changed():
    """A run continued gently from ImageNet moves its weights by < 1 % yet its features move: it did move."""
    healthy = {"embedding_std": 0.5, "effective_rank": 100.0}

    def diag(change: float, before: float | None, after: float | None) -> dict:
        return {"encoder_change": change, "before": {**healthy, "knn_macro_f1": before},
                "after": {**healthy, "knn_macro_f1": after}}

    assert dg.problems(diag(0.0077, 0.670, 0.749)) == []  # VICReg continued on the cpu track
    assert dg.problems(diag(0.0077, 0.670, 0.670 + dg.MOVED_KNN_GAIN)) == []
    stuck = dg.problems(diag(0.0077, 0.670, 0.680))
    assert len(stuck) == 1 and stuck[0].startswith("the encoder did not move: relative weight change 7.70e-03")
    assert dg.problems(diag(0.0077, None, None)) == stuck  # unlabelled pool: the weights alone decide
    assert dg.problems(diag(0.05, 0.670, 0.600)) == []  # moved (a fall of the k-NN is the page's note, not this)
    assert dg.problems(diag(0.0075, 0.670, 0.424)) == []  # MoCo continued on the cpu track: features moved, down
    assert dg.problems(diag(0.0075, 0.670, 0.670 - dg.MOVED_KNN_GAIN)) == []
    assert len(dg.problems(diag(0.0075, 0.670, 0.660))) == 1
