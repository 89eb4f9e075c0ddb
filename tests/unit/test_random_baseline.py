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


def test_the_random_baseline_is_its_seeds_network_with_batchnorm_statistics_estimated_on_the_pool(tmp_path):
    pool = tiny_pool(tmp_path / "pool")
    ckpt = random_baseline(BACKBONE, RES, SEED, pool, tmp_path / "runs", progress=False)
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
