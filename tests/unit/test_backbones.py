"""Backbones, ImageNet inits, encoder checkpoints and the method registry's error paths."""
from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark import backbones
from benchmark.backbones import BACKBONES, LITE_BN_EPS, build_backbone, lite0_imagenet_state_dict
from benchmark.checkpoint import checkpoint_identity, file_sha256, load_encoder, save_encoder, weights_sha256
from benchmark.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("size", [32, 64])
def test_shapes(name, size):
    encoder = build_backbone(name).eval()
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        assert encoder(x).shape == (2, encoder.feat_dim)
        assert encoder.forward_features(x).shape == (2, encoder.feat_dim, size // 32, size // 32)
    assert encoder.name == name
    assert encoder.feat_dim == {"resnet18": 512, "resnet50": 2048, "efficientnet_lite0": 1280}[name]


def test_rgb_input_is_refused():
    with pytest.raises(ValueError, match="grayscale"):
        build_backbone("resnet18")(torch.rand(2, 3, 32, 32))


def test_unknown_backbone_and_init():
    with pytest.raises(UserError, match="resnet18, resnet50, efficientnet_lite0"):
        build_backbone("vit_b16")
    with pytest.raises(UserError, match="random, imagenet"):
        build_backbone("resnet18", init="ssl")


def _chelsea_224() -> torch.Tensor:
    from skimage.data import chelsea

    rgb = torch.from_numpy(chelsea()).permute(2, 0, 1).float()[None] / 255
    return F.interpolate(rgb, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)


def test_efficientnet_lite0_imagenet_mapping_sees_a_cat():
    import timm

    net = timm.create_model("efficientnet_lite0", pretrained=False, bn_eps=LITE_BN_EPS).eval()
    state = lite0_imagenet_state_dict(net)
    assert len(state) == 296 and list(state) == list(net.state_dict())
    net.load_state_dict(state)
    rgb = _chelsea_224()
    mean = torch.tensor(backbones.LITE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(backbones.LITE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        top1 = net((rgb - mean) / std).argmax(1).item()
    assert 281 <= top1 <= 285, f"top-1 ImageNet class {top1} is not a cat"

    # build_backbone(init="imagenet") carries exactly these weights behind its grayscale front end.
    encoder = build_backbone("efficientnet_lite0", init="imagenet").eval()
    gray = rgb.mean(1, keepdim=True)
    with torch.no_grad():
        expected = net.forward_features((gray.expand(-1, 3, -1, -1) - mean) / std).mean((2, 3))
        torch.testing.assert_close(encoder(gray), expected)


def test_efficientnet_lite0_mapping_rejects_other_weights(tmp_path):
    import timm

    wrong = tmp_path / "not_lite0.pth"
    torch.save(timm.create_model("efficientnet_b0").state_dict(), wrong)
    net = timm.create_model("efficientnet_lite0")
    with pytest.raises(UserError, match="not_lite0.pth"):
        lite0_imagenet_state_dict(net, str(wrong))


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(url, dst):
        raise OSError("network unreachable")

    monkeypatch.setattr(backbones, "_download", offline)
    return tmp_path / "hub"


def test_resnet_without_weights_says_which_file_where(empty_hub):
    expected = empty_hub / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(UserError) as err:
        build_backbone("resnet50", init="imagenet")
    message = str(err.value)
    assert str(expected) in message and "--imagenet-weights" in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message


def test_resnet_weights_from_hub_cache_and_from_a_path(empty_hub, tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.resnet18().state_dict()
    cached = backbones.resnet_weights_path("resnet18")
    cached.parent.mkdir(parents=True)
    torch.save(reference, cached)
    encoder = build_backbone("resnet18", init="imagenet")
    assert torch.equal(encoder.body.conv1.weight, reference["conv1.weight"])

    explicit = tmp_path / "elsewhere.pth"
    torch.save({"state_dict": reference}, explicit)
    encoder = build_backbone("resnet18", init="imagenet", imagenet_weights=str(explicit))
    assert torch.equal(encoder.body.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"])
    with pytest.raises(UserError, match="missing.pth: no such file"):
        build_backbone("resnet18", init="imagenet", imagenet_weights=str(tmp_path / "missing.pth"))


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    encoder = build_backbone("efficientnet_lite0").eval()
    path = tmp_path / "enc.safetensors"
    save_encoder(path, encoder, {"method": "vicreg", "steps": 3})
    loaded, meta = load_encoder(path)
    assert meta == {"method": "vicreg", "steps": 3, "backbone": "efficientnet_lite0", "feat_dim": 1280,
                    "weights_sha256": weights_sha256(encoder.state_dict())}
    # The identity of an encoder is its weights: other metadata (wall time, throughput) leaves it alone.
    again = tmp_path / "again.safetensors"
    save_encoder(again, encoder, {"method": "vicreg", "steps": 3, "wall_time_s": 12.5})
    assert checkpoint_identity(again) == checkpoint_identity(path) and file_sha256(again) != file_sha256(path)
    again.unlink()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), encoder(x))
    assert [p.name for p in tmp_path.iterdir()] == ["enc.safetensors"]  # no temporary file left

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(UserError, match="corrupt.safetensors"):
        load_encoder(corrupt)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(UserError, match="garbage.safetensors"):
        load_encoder(garbage)
    with pytest.raises(UserError, match="absent.safetensors: no such file"):
        load_encoder(tmp_path / "absent.safetensors")
    with pytest.raises(UserError, match="JSON"):
        save_encoder(tmp_path / "x.safetensors", encoder, {"path": Path("/x")})


def test_unknown_method_lists_known_names():
    from methods.registry import get_method

    with pytest.raises(UserError, match="unknown SSL method 'swav'.*barlowtwins.*vicreg"):
        get_method("swav")


def test_hyper_parameter_overrides_are_checked():
    from methods.registry import get_method

    cls = get_method("simclr")
    method = cls(build_backbone("resnet18"), temperature=1, lr=0.1)
    assert method.hparams["temperature"] == 1.0 and isinstance(method.hparams["temperature"], float)
    assert method.hparams["batch_size"] == cls.defaults["batch_size"]
    with pytest.raises(UserError, match="no hyper-parameter.*tau"):
        cls(build_backbone("resnet18"), tau=0.1)
    with pytest.raises(UserError, match="temperature expects float"):
        cls(build_backbone("resnet18"), temperature="hot")
    with pytest.raises(UserError, match="optimizer must be one of"):
        cls(build_backbone("resnet18"), optimizer="adagrad")


def test_broken_plugin_is_reported_not_swallowed(monkeypatch):
    from methods import registry

    broken = EntryPoint(name="broken", value="sslbench_no_such_module:Method", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [broken])
    with pytest.raises(UserError, match="'broken'.*ModuleNotFoundError"):
        registry.available_methods()
    assert registry.get_method("vicreg").name == "vicreg"  # built-ins do not depend on plug-ins


def test_plugin_that_is_not_a_method_is_refused(monkeypatch):
    from methods import registry

    ep = EntryPoint(name="tensor", value="torch:Tensor", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [ep])
    with pytest.raises(UserError, match="not a subclass of methods.base.SSLMethod"):
        registry.available_methods()


def test_momentum_update_and_distributed_flag():
    from methods.registry import get_method

    method = get_method("byol")(build_backbone("resnet18"))
    online, target = method.momentum_pairs()[0]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    method.update_momentum(1.0)  # momentum 1 at the end of training: the target stays
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters(), strict=True))
    method.update_momentum(0.0)  # momentum_base: the target moves towards the online network
    assert not torch.equal(before[0], next(target.parameters()))

    method = get_method("vicreg")(build_backbone("resnet18"))
    method.set_gather_distributed(True)
    assert method.criterion.gather_distributed is True
