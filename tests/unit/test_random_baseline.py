"""The `random` baseline: the random network of its pretraining seed, given what SSL gets for free,
BatchNorm statistics estimated on the pretraining pool (DESIGN.md, "Baselines get what SSL gets for
free"), and nothing else: no gradient step."""
import torch

from benchmark.backbones import build_backbone
from benchmark.checkpoint import load_encoder
from benchmark.pretrain import diagnostics as dg
from benchmark.pretrain.finish import RANDOM_SEED_BASE, random_baseline
from benchmark.pretrain.sampler import pretraining_positions
from tests.fake_source import tiny_pool

BACKBONE, RES, SEED = "efficientnet_lite0", 32, 1


def _batchnorm_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t for name, t in module.state_dict().items() if name.endswith(("running_mean", "running_var"))}


def test_the_random_baseline_is_its_seeds_network_with_batchnorm_statistics_estimated_on_the_pool(tmp_path, capsys):
    pool = tiny_pool(tmp_path / "pool")
    ckpt = random_baseline(BACKBONE, RES, SEED, pool, tmp_path / "runs", progress=False)
    assert capsys.readouterr().err == ""  # progress=False says nothing, down to the diagnostics line
    encoder, meta = load_encoder(ckpt)
    assert meta["method"] == "random" and meta["steps"] == 0 and meta["weights_seed"] == RANDOM_SEED_BASE + SEED

    torch.manual_seed(RANDOM_SEED_BASE + SEED)
    initial = build_backbone(BACKBONE, init="random")
    saved = encoder.state_dict()
    # The weights are the seed's draw, untouched: no gradient step was taken.
    for name, param in initial.named_parameters():
        assert torch.equal(param, saved[name]), name

    # The BatchNorm statistics are the pool's, not the initial ones (mean 0, variance 1): the same
    # network with its statistics estimated on the pool's pretraining frames.
    expected = build_backbone(BACKBONE, init="random")
    expected.load_state_dict(initial.state_dict())
    positions = pretraining_positions(pool)
    dg.estimate_batchnorm(expected, pool.frames[dg.evenly_spaced(positions, dg.BATCHNORM_FRAMES)], RES,
                          device=torch.device("cpu"))
    got, start, want = _batchnorm_buffers(encoder), _batchnorm_buffers(initial), _batchnorm_buffers(expected)
    assert got.keys() == want.keys() and len(got) > 10
    for name in got:
        # The same ops on the same frames: equal up to float32 rounding of the averages (rtol 1e-5).
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)
    # ...while the initial statistics (mean 0, variance 1) are far from the pool's: most layers' statistics
    # move by O(1) (a layer right after another BatchNorm may keep a mean of ~0, so not every buffer moves).
    moved = [name for name in got if (got[name] - start[name]).abs().max() > 0.1]
    assert len(moved) > len(got) / 2, f"only {len(moved)} of {len(got)} BatchNorm buffers left their initial values"


def test_the_checkpoint_records_what_it_is_and_is_made_once(tmp_path, capsys):
    import json

    from benchmark.device import machine_record
    from benchmark.pretrain.config import ENGINE_VERSION
    from benchmark.pretrain.finish import FINAL_NAME, random_baseline_key

    pool = tiny_pool(tmp_path / "pool")
    ckpt = random_baseline(BACKBONE, RES, SEED, pool, tmp_path / "runs")  # progress on, as the CLI runs it
    key = random_baseline_key(BACKBONE, RES, SEED, pool.fingerprint)
    assert ckpt == tmp_path / "runs" / f"random-{key[:12]}" / FINAL_NAME
    _, meta = load_encoder(ckpt)
    diag = meta.pop("diagnostics")
    wall = meta.pop("wall_time_s")
    assert isinstance(wall, float) and 0 <= wall < 600 and wall == round(wall, 1)  # seconds, to 0.1 s
    meta.pop("feat_dim", None), meta.pop("weights_sha256")  # added by save_encoder (tests/unit/test_backbones.py)
    assert meta == {"method": "random", "backbone": BACKBONE, "init": "random", "resolution": RES, "steps": 0,
                    "seed": SEED, "weights_seed": RANDOM_SEED_BASE + SEED, "data_fingerprint": pool.fingerprint,
                    "data_subset_fingerprint": pool.fingerprint, "frames": len(pretraining_positions(pool)),
                    "config_key": key, "engine_version": ENGINE_VERSION, "threads": torch.get_num_threads(),
                    "machine": machine_record("cpu")}
    # No step taken, so nothing moved and nothing is a problem (an SSL run that did not move would be one).
    data = dg.diagnostic_data(pool.index, pool.frames, pretraining_positions(pool))
    assert diag["encoder_change"] == 0.0 and diag["before"] == diag["after"] and diag["problems"] == []
    assert dg.problems(diag), "an unmoved encoder is a problem for an SSL run; the baseline is exempt"
    assert diag["frames"] == len(data.frames) and diag["knn"] == {"k": dg.KNN_K, "temperature": dg.KNN_TEMPERATURE}
    text = (ckpt.parent / "diagnostics.json").read_text()
    assert json.loads(text) == diag and text == json.dumps(json.loads(text), indent=1) + "\n"
    assert dg.summary_line("random", diag) in capsys.readouterr().err

    # Made once: a second call returns the same file untouched.
    stamp = ckpt.stat().st_mtime_ns
    assert random_baseline(BACKBONE, RES, SEED, pool, tmp_path / "runs", progress=False) == ckpt
    assert ckpt.stat().st_mtime_ns == stamp


def test_the_key_is_the_one_the_committed_results_record():
    """Committed random rows name their checkpoint by this key; a change to what it hashes (or how)
    would make every committed random result look unfinished."""
    import json
    from pathlib import Path

    from benchmark.pretrain.config import ENGINE_VERSION
    from benchmark.pretrain.finish import random_baseline_key

    root = Path(__file__).resolve().parents[2] / "leaderboard" / "results"
    seen = {}
    for path in sorted(root.glob("*/random/**/*.json")):
        pre = json.loads(path.read_text())["init"]["pretrain"]
        if pre["engine_version"] == ENGINE_VERSION:
            seen[(pre["backbone"], pre["resolution"], pre["seed"], pre["data_fingerprint"])] = pre["config_key"]
    assert len(seen) >= 2, "the committed tracks hold random results of several pretraining seeds"
    for (backbone, resolution, seed, data), key in seen.items():
        assert random_baseline_key(backbone, resolution, seed, data) == key
