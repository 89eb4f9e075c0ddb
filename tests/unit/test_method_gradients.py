"""Stop-gradients of the distillation and momentum methods, through their public `loss()`.

SimSiam (Chen & He 2021, Alg. 1): each view's prediction regresses onto the other view's projection
held constant, D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2. BYOL and MoCo: the target (key)
network is never trained by the loss; only the EMA moves it.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.registry import get_method
from tests.unit.downstream_fakes import TinyEncoder

SMALL = {"simsiam": {"proj_hidden_dim": 16, "proj_output_dim": 16, "pred_hidden_dim": 8},
         "byol": {"proj_hidden_dim": 16, "proj_output_dim": 16, "pred_hidden_dim": 16},
         "moco": {"proj_hidden_dim": 16, "proj_output_dim": 16, "queue_size": 32}}
TARGETS = {"byol": ("target_encoder", "target_projector"), "moco": ("key_encoder", "key_projector")}

pytestmark = pytest.mark.usefixtures("one_thread")


def build(name: str):
    torch.manual_seed(0)
    return get_method(name)(TinyEncoder(), **SMALL[name]).train()


def views(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(6, 1, 16, 16, generator=g) for _ in range(2)]


def gradients(method, loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
    method.zero_grad(set_to_none=True)
    loss.backward()
    return {n: None if p.grad is None else p.grad.clone() for n, p in method.named_parameters()}


def simsiam_reference(method, vs: list[torch.Tensor], stop_gradient: bool = True) -> torch.Tensor:
    """The paper's loss written out with the method's own modules (negative cosine similarity)."""
    z0, z1 = (method.projector(method.encoder(v)) for v in vs)
    p0, p1 = method.predictor(z0), method.predictor(z1)
    t0, t1 = (z0.detach(), z1.detach()) if stop_gradient else (z0, z1)
    return -0.5 * (F.cosine_similarity(p0, t1).mean() + F.cosine_similarity(p1, t0).mean())


def assert_same_gradients(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] is None) == (b[name] is None), name
        if a[name] is not None:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-7, msg=name)


def test_simsiam_gradients_reach_only_the_predictor_branch():
    method, vs = build("simsiam"), views()
    got = gradients(method, method.loss(vs))
    assert_same_gradients(got, gradients(method, simsiam_reference(method, vs)))
    # The check can tell the difference: without the stop-gradient the encoder's gradients differ.
    without = gradients(method, simsiam_reference(method, vs, stop_gradient=False))
    assert not torch.allclose(got["encoder.proj.weight"], without["encoder.proj.weight"], rtol=1e-3, atol=1e-6)
    assert all(g is not None and g.abs().sum() > 0 for n, g in got.items() if n.startswith(("encoder.", "predictor.")))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_target_network_gets_no_gradient_and_is_not_optimised(name):
    method = build(name)
    target_params = {n: p for n, p in method.named_parameters() if n.startswith(TARGETS[name])}
    assert target_params, f"{name} has no target parameters named {TARGETS[name]}"
    grads = gradients(method, method.loss(views()))
    assert {n for n in target_params if grads[n] is not None} == set()
    assert all(grads[n] is not None for n in grads if n.startswith("encoder."))  # the online side does learn

    # One optimiser step over the method's parameter groups, with weight decay and momentum:
    # the online encoder moves, the target does not (only the EMA may move it).
    before = {n: p.detach().clone() for n, p in method.named_parameters()}
    opt = torch.optim.SGD(method.parameter_groups(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        method.loss(views()).backward()
        opt.step()
    after = dict(method.named_parameters())
    assert [n for n in target_params if not torch.equal(after[n], before[n])] == []
    assert not torch.equal(after["encoder.proj.weight"], before["encoder.proj.weight"])
    optimised = {id(p) for g in method.parameter_groups() for p in g["params"]}
    assert not optimised & {id(p) for p in target_params.values()}


def test_moco_normalises_a_query_and_its_key_with_statistics_of_different_images():
    # Shuffling BN: with BatchNorm over the whole batch, the positive key shares the query's batch
    # statistics and the queued negatives do not, which the encoder can learn instead of the image.
    method = get_method("moco")(TinyEncoder(), **SMALL["moco"], bn_splits=3).train()
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    changed = x.clone()
    changed[5] += 1.0

    def moved(a: torch.Tensor, b: torch.Tensor) -> set[int]:
        return {i for i in range(len(a)) if not torch.allclose(a[i], b[i], atol=1e-6)}

    # Queries: groups {0, 1}, {2, 3}, {4, 5}; a change to image 5 reaches only its own group.
    assert moved(method.queries(x), method.queries(changed)) == {4, 5}
    # Keys, in the batch's order: image 5 and the one it was shuffled with, which varies from step to step.
    partners = set()
    for seed in range(8):
        torch.manual_seed(seed)
        before = method.keys(x)
        torch.manual_seed(seed)
        after = method.keys(changed)
        diff = moved(before, after)
        assert len(diff) == 2 and 5 in diff
        partners |= diff - {5}
    assert len(partners) >= 3
    # The check can tell the difference: with one group every query sees the whole batch.
    method.hparams["bn_splits"] = 1
    assert moved(method.queries(x), method.queries(changed)) == set(range(6))


def test_moco_head_batch_norm_spreads_the_queries_of_nearly_parallel_features():
    # A random encoder's pooled features are non-negative and nearly parallel; v2's head (no BatchNorm)
    # keeps its queries nearly parallel, so every logit is alike and SGD cannot separate the images
    # (cpu-v3's one-batch check: the loss stays at ln 127). v3's BatchNorm centres them.
    torch.manual_seed(0)
    base = torch.rand(1, TinyEncoder.feat_dim)
    feats = base + 0.01 * torch.rand(16, TinyEncoder.feat_dim)  # 16 images, cosine similarity > 0.99 to one another

    def mean_cosine(batch_norm: bool) -> float:
        torch.manual_seed(1)
        method = get_method("moco")(TinyEncoder(), **SMALL["moco"], proj_batch_norm=batch_norm).train()
        q = F.normalize(method.projector(feats), dim=1)
        off = ~torch.eye(len(q), dtype=torch.bool)
        return float((q @ q.T)[off].mean())

    assert mean_cosine(False) > 0.95
    assert mean_cosine(True) < 0.2
    method = get_method("moco")(TinyEncoder(), **SMALL["moco"], proj_batch_norm=True)
    for head in (method.projector, method.key_projector):
        assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules()) == 2
