"""Linear-probe grid speed: 3 fractions × 5 seeds for one checkpoint, after feature extraction,
at the smoke size (efficientnet_lite0 features: 1,280-d; ~216 training images). A measurement (the
target is ≤ 10 s on CPU, BENCHMARKS.md); it also runs once, unmeasured, outside `make perf`."""
import numpy as np
import pytest
import torch

from protocols.linear_probe import run_probe
from protocols.spec import load_protocol
from tests.unit.downstream_fakes import fake_downstream


@pytest.mark.perf
def test_linear_probe_grid_for_one_checkpoint(benchmark, tmp_path):
    cache = fake_downstream(tmp_path, n_subjects=30, per_subject=12)
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(len(cache.index), 1280)).astype(np.float32)
    feats[:, :3] += 2 * np.eye(3)[cache.index["label"].to_numpy()]
    spec = load_protocol("linear_probe")

    def grid():
        return [run_probe(feats, cache, spec, f, s, torch.device("cpu")) for f in spec.fractions for s in spec.seeds]

    results = benchmark.pedantic(grid, rounds=3, iterations=1)
    assert len(results) == 15
