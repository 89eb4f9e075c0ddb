"""Batched device augmentation: shapes, ranges, per-sample randomness, determinism, identity."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmark.augment import ViewAugment, augment, default_views, views_from_overrides
from benchmark.errors import UserError


def _frames(b: int = 8, h: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, h), dtype=torch.uint8, generator=g)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("size", [16, 32, 48])
def test_shape_dtype_and_range(size):
    for view in default_views():
        out = augment(_frames(), view, size, _gen())
        assert out.shape == (8, 1, size, size)
        assert out.dtype == torch.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert torch.isfinite(out).all()


def test_identity_when_all_strengths_are_zero():
    frames = _frames(h=32)
    out = augment(frames, ViewAugment.identity(), 32, _gen())
    torch.testing.assert_close(out, frames.float().unsqueeze(1) / 255, rtol=0, atol=1e-6)


def test_identity_resize_is_a_plain_downscale():
    frames = _frames(h=32)
    out = augment(frames, ViewAugment.identity(), 16, _gen())
    expected = torch.nn.functional.avg_pool2d(frames.float().unsqueeze(1) / 255, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_same_seed_same_views_other_seed_other_views():
    frames = _frames()
    v1, _ = default_views()
    a = augment(frames, v1, 32, _gen(3))
    b = augment(frames, v1, 32, _gen(3))
    c = augment(frames, v1, 32, _gen(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_randomness_is_per_sample():
    # One frame repeated: a per-batch draw would give identical views, per-sample draws differ.
    frames = _frames(b=1).expand(6, -1, -1).contiguous()
    out = augment(frames, default_views()[0], 32, _gen())
    flat = out.flatten(1)
    distinct = {tuple(torch.round(row * 1e4).tolist()) for row in flat}
    assert len(distinct) == 6


def test_each_operation_changes_the_image_only_when_enabled():
    frames = _frames(h=32)
    base = augment(frames, ViewAugment.identity(), 32, _gen())
    ops = {
        "hflip_p": dict(hflip_p=1.0),
        "intensity": dict(intensity_p=1.0),
        "blur": dict(blur_p=1.0, blur_sigma=(1.0, 2.0)),
        "noise": dict(noise_p=1.0),
        "solarize": dict(solarize_p=1.0),
        "crop": dict(crop_scale=(0.3, 0.5)),
    }
    for name, kw in ops.items():
        cfg = replace(ViewAugment.identity(), **kw)
        out = augment(frames, cfg, 32, _gen())
        assert not torch.allclose(out, base, atol=1e-3), name
    flipped = augment(frames, replace(ViewAugment.identity(), hflip_p=1.0), 32, _gen())
    torch.testing.assert_close(flipped, base.flip(-1), rtol=0, atol=1e-6)
    solar = augment(frames, replace(ViewAugment.identity(), solarize_p=1.0), 32, _gen())
    torch.testing.assert_close(solar, torch.where(base >= 0.5, 1 - base, base), rtol=0, atol=1e-6)


def test_blur_smooths():
    frames = _frames(h=32)
    cfg = replace(ViewAugment.identity(), blur_p=1.0, blur_sigma=(8.0, 8.0))
    out = augment(frames, cfg, 32, _gen())
    base = frames.float() / 255
    assert out.std() < 0.5 * base.std()
    torch.testing.assert_close(out.mean(), base.mean(), rtol=0, atol=0.02)


def test_overrides_apply_per_view_and_reject_unknown_keys():
    v1, v2 = views_from_overrides({"blur_p": 0.3, "view2.solarize_p": 0.0, "crop_scale": [0.5, 1.0]})
    assert v1.blur_p == v2.blur_p == 0.3
    assert v2.solarize_p == 0.0 and v1.solarize_p == default_views()[0].solarize_p
    assert v1.crop_scale == (0.5, 1.0)
    with pytest.raises(UserError, match="unknown augmentation setting 'hue'"):
        views_from_overrides({"hue": 0.1})
    with pytest.raises(UserError, match="probability"):
        views_from_overrides({"view1.blur_p": 1.5})
    with pytest.raises(UserError, match="view1. or view2."):
        views_from_overrides({"view3.blur_p": 0.5})


def test_geometry_only_view_shares_the_crop_and_flip_of_the_augmented_view():
    # The AE's clean target: same generator state + geometry_only() → the same boxes and flips,
    # so with intensity/blur/noise switched off in the augmented view the two are identical.
    frames = _frames(h=40)
    crop_only = replace(default_views()[0], intensity_p=0.0, blur_p=0.0, noise_p=0.0, solarize_p=0.0)
    g = _gen(7)
    state = g.get_state()
    a = augment(frames, crop_only, 24, g)
    g.set_state(state)
    b = augment(frames, default_views()[0].geometry_only(), 24, g)
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(frames, ViewAugment.identity(), 24, _gen(7)))  # it is cropped
