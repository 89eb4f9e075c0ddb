"""Every registered SSL method, plug-ins included, passes the same checks on CPU.

No method-specific code here: a new method is covered as soon as it is registered. CONTRIBUTING.md's
worked example is installed as a real plug-in (a dist-info with an entry point on sys.path) before
the methods are collected, so the plug-in route and the documented example are tested too.
"""
from __future__ import annotations

import atexit
import copy
import functools
import importlib
import math
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import build_backbone
from benchmark.checkpoint import file_sha256, load_encoder, save_encoder
from methods.base import FAMILIES, REQUIRED_DEFAULTS, VIEWS
from methods.registry import available_methods

REPO = Path(__file__).resolve().parents[2]
PLUGIN_MODULE = "sslbench_example_plugin"
PLUGIN_METHOD = "dcl"
BATCH, SIZE = 8, 32
STEPS, LR = 2, 1e-3  # Adam on one fixed batch: every built-in loss falls by >= 10 % in 2 steps
MIN_DROP = 0.05  # required fall, relative to the initial loss (or to 0.1 for losses near 0)


def _install_example_plugin() -> str:
    """CONTRIBUTING.md's example, without its decorator, installed as a package with an entry point."""
    text = (REPO / "CONTRIBUTING.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    source = next(b for b in blocks if "class " in b and "SSLMethod" in b)
    source = re.sub(r"^@register_method\(.*\)\n", "", source, flags=re.M)
    root = Path(tempfile.mkdtemp(prefix="sslbench-plugin-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    (root / f"{PLUGIN_MODULE}.py").write_text(source)
    info = root / f"{PLUGIN_MODULE}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sslbench-example-plugin\nVersion: 0.1\n")
    cls_name = re.search(r"^class (\w+)\(SSLMethod\)", source, flags=re.M).group(1)
    (info / "entry_points.txt").write_text(f"[sslbench.methods]\n{PLUGIN_METHOD} = {PLUGIN_MODULE}:{cls_name}\n")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return str(root)


PLUGIN_PATH = _install_example_plugin()
METHODS = available_methods()
sys.path.remove(PLUGIN_PATH)  # installed only while this module runs, so other modules see the built-ins


@pytest.fixture(autouse=True, scope="module")
def _plugin_installed():
    sys.path.insert(0, PLUGIN_PATH)
    importlib.invalidate_caches()
    yield
    sys.path.remove(PLUGIN_PATH)
    importlib.invalidate_caches()


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return METHODS[name](build_backbone("resnet18", init="random"))


def _fixed_views(cls) -> list[torch.Tensor]:
    # Fixed "augmentations" of a fixed batch of smooth images, so that a loss can fall on them.
    g = torch.Generator().manual_seed(0)
    clean = F.interpolate(torch.rand(BATCH, 1, 8, 8, generator=g), size=(SIZE, SIZE), mode="bilinear")
    a = (clean * 0.9 + 0.05 + 0.03 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    b = (clean.flip(-1) * 0.8 + 0.1 + 0.03 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return [a, clean] if cls.views == "augmented_and_clean" else [a, b]


@dataclass
class Run:
    method: torch.nn.Module  # after STEPS optimisation steps
    views: list[torch.Tensor]
    step_losses: list[float]
    initial_loss: float  # fresh build, same seed, no grad
    trained_loss: float  # fresh build with the trained parameters loaded, no grad
    initial_encoder: dict[str, torch.Tensor]


@functools.cache
def _run(name: str) -> Run:
    """Train once per method on the fixed batch; the checks below share this run (CPU time is scarce)."""
    method = _build(name)
    views = _fixed_views(type(method))
    opt = torch.optim.Adam(method.parameter_groups(), lr=LR)
    losses = []
    for step in range(STEPS):
        loss = method.loss(views)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.update_momentum((step + 1) / STEPS)
        losses.append(loss.item())
    # Score initial and trained parameters from the same fresh state (buffers such as a MoCo queue
    # reset), so the comparison measures what optimisation did to the objective.
    scored = _build(name)
    initial_encoder = copy.deepcopy(scored.encoder.state_dict())
    trained = {k: p.detach() for k, p in method.named_parameters()}
    with torch.no_grad():
        initial_loss = scored.loss(views).item()
        missing, unexpected = scored.load_state_dict(trained, strict=False)
        assert not unexpected and not set(missing) & set(trained)
        trained_loss = scored.loss(views).item()
    return Run(method, views, losses, initial_loss, trained_loss, initial_encoder)


def test_plugin_registered_through_entry_point():
    cls = METHODS[PLUGIN_METHOD]
    assert cls.__module__ == PLUGIN_MODULE
    assert cls.name == PLUGIN_METHOD  # named by its entry point: the example's decorator was removed
    assert {"ae", "simclr", "moco", "byol", "simsiam", "barlowtwins", "vicreg"} <= set(METHODS)


def test_cli_lists_every_method_with_family_and_views(capsys):
    from benchmark.cli import main

    assert main(["methods"]) == 0
    rows = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name, cls in METHODS.items():
        assert rows[name] == [cls.family, cls.views]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_declaration(name):
    cls = METHODS[name]
    assert cls.name == name
    assert cls.family in FAMILIES and cls.views in VIEWS
    assert set(REQUIRED_DEFAULTS) <= set(cls.defaults)
    assert set(cls.notes) == set(cls.defaults), "every default needs a one-line note, and only defaults"
    assert all(isinstance(n, str) and n.strip() and "\n" not in n for n in cls.notes.values())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_step_finite_and_encoder_shape(name):
    run = _run(name)
    assert all(math.isfinite(x) for x in run.step_losses)
    encoder = run.method.encoder
    changed = [k for k, v in encoder.state_dict().items() if not torch.equal(v, run.initial_encoder[k])]
    assert changed, "optimisation steps must update the encoder"
    with torch.no_grad():
        assert encoder(run.views[0]).shape == (BATCH, encoder.feat_dim)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_falls_on_fixed_batch(name):
    run = _run(name)
    assert math.isfinite(run.initial_loss) and math.isfinite(run.trained_loss)
    required_drop = MIN_DROP * max(abs(run.initial_loss), 0.1)
    assert run.trained_loss < run.initial_loss - required_drop, f"loss {run.initial_loss:.4g} → {run.trained_loss:.4g}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_checkpoint_round_trip(name, tmp_path):
    run = _run(name)
    path = tmp_path / "encoder.safetensors"
    digest = save_encoder(path, run.method.encoder, {"method": name, "hparams": run.method.hparams})
    assert digest == file_sha256(path)
    encoder, meta = load_encoder(path)
    assert meta["method"] == name and meta["backbone"] == "resnet18" and meta["hparams"] == run.method.hparams
    original = copy.deepcopy(run.method.encoder).eval()
    with torch.no_grad():
        assert torch.equal(encoder.eval()(run.views[0]), original(run.views[0]))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_seed_same_loss(name):
    run = _run(name)
    assert run.step_losses[0] == run.initial_loss  # two builds with seed 0, same loss
    with torch.no_grad():
        other = _build(name, seed=1).loss(run.views).item()
    assert other != run.initial_loss  # the seed reaches the initialisation


@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_is_fp32_under_bf16_autocast(name):
    # The engine trains in bf16-mixed on GPUs; CPU autocast exercises the same casting rules.
    run = _run(name)
    method = _build(name)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss = method.loss(run.views)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert abs(loss.item() - run.initial_loss) <= 0.05 * abs(run.initial_loss) + 0.01
