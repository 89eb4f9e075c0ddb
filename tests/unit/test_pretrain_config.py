"""`sslbench pretrain` settings: preset < flags, the config key, and clear errors."""
from __future__ import annotations

import pytest

from benchmark.cli import build_parser, main
from benchmark.cli.pretrain import build_config
from benchmark.errors import UserError
from benchmark.pretrain.config import PretrainConfig


def _config(*flags: str):
    return build_config(build_parser().parse_args(["pretrain", "--method", "vicreg", *flags]))


def test_flags_override_the_preset_and_the_preset_overrides_the_defaults():
    cfg, spec, options = _config("--preset", "smoke", "--steps", "5", "--set", "lr=0.1",
                                 "--augment", "view2.solarize_p=0", "--augment", "crop_scale=[0.5,1.0]",
                                 "--positives", "temporal:4")
    assert cfg.steps == 5 and cfg.batch_size == 64  # flag, preset
    assert cfg.backbone == "efficientnet_lite0" and cfg.resolution == 48  # from the preset
    assert cfg.hparams == {"lr": 0.1}
    assert cfg.augment == {"view2.solarize_p": 0, "crop_scale": [0.5, 1.0]}
    assert cfg.positives == "temporal:4"
    assert spec == "synthetic" and options["subjects"] == 24 and options["resolution"] == 48
    cfg, spec, options = _config("--dataset", "videos:/data/clips", "--resolution", "96", "--stride", "5")
    assert spec == "videos:/data/clips" and options == {"resolution": 96, "stride": 5}
    assert cfg.resolution == 96 and cfg.backbone == "resnet18" and cfg.batch_size is None


def test_key_covers_what_changes_the_checkpoint_and_nothing_else():
    base = PretrainConfig(method="vicreg")
    assert base.key("d") == PretrainConfig(method="vicreg").key("d")
    assert base.key("d") == PretrainConfig(method="vicreg", compile=True).key("d")
    for changed in (PretrainConfig(method="vicreg", seed=1), PretrainConfig(method="vicreg", hparams={"lr": 0.1}),
                    PretrainConfig(method="vicreg", positives="temporal:2"), PretrainConfig(method="simclr")):
        assert changed.key("d") != base.key("d")
    assert base.key("d") != base.key("e")


def test_key_changes_when_a_method_default_changes(monkeypatch):
    """A checkpoint made with an older default is not reused for the new one."""
    from methods.registry import get_method

    base = PretrainConfig(method="vicreg").key("d")
    cls = get_method("vicreg")
    monkeypatch.setattr(cls, "defaults", {**cls.defaults, "lr": cls.defaults["lr"] * 2})
    assert PretrainConfig(method="vicreg").key("d") != base
    # The same value given as an override is the same run as the default it matches.
    monkeypatch.undo()
    assert PretrainConfig(method="vicreg", hparams={"lr": cls.defaults["lr"]}).key("d") == base


@pytest.mark.parametrize("flags, message", [
    (["--set", "lr"], "--set expects KEY=VALUE"),
    (["--positives", "neighbours"], "--positives must be"),
    (["--steps", "0"], "steps .* must be an integer >= 1"),
    (["--batch-size", "1"], "batch size must be >= 2"),
    (["--augment", "crop_scale=[0.5"], "is not a list"),
])
def test_bad_settings_are_user_errors(flags, message):
    with pytest.raises(UserError, match=message):
        _config(*flags)


def test_unknown_method_fails_with_the_known_names(capsys):
    assert main(["pretrain", "--method", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown SSL method 'nope'" in err and "vicreg" in err


def _pool(splits: list[str]):
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from benchmark.data.cache import FrameCache

    n = len(splits)
    index = pd.DataFrame({"video_id": "v", "subject_id": "s", "frame_idx": range(n), "label": -1, "split": splits})
    return FrameCache(root=Path("pool"), frames=np.zeros((n, 8, 8), np.uint8), index=index, class_names=[],
                      meta={"fingerprint": "a" * 64})


def test_pretraining_frames_default_to_the_pretrain_split_and_subsets_change_the_data_key():
    import numpy as np

    from benchmark.pretrain.run import data_fingerprint
    from benchmark.pretrain.sampler import pretraining_positions

    pool = _pool(["pretrain"] * 10 + ["test"] * 5)
    cfg = PretrainConfig(method="vicreg")
    assert list(pretraining_positions(pool, cfg.limit_frames)) == list(range(10))  # never a test frame
    thinned = pretraining_positions(pool, PretrainConfig(method="vicreg", limit_frames=4).limit_frames)
    assert list(thinned) == [0, 3, 6, 9]
    subset = pretraining_positions(pool, cfg.limit_frames, np.array([4, 2, 2]))
    assert list(subset) == [2, 4]
    assert data_fingerprint(pool, subset, subset) != data_fingerprint(pool, pretraining_positions(pool, cfg.limit_frames), None)
    assert data_fingerprint(pool, subset, subset) == data_fingerprint(pool, np.array([2, 4]), np.array([2, 4]))
    with pytest.raises(UserError, match="row numbers of the pool"):
        pretraining_positions(pool, cfg.limit_frames, np.array([99]))
    with pytest.raises(UserError, match="no frames in the 'pretrain' split"):
        pretraining_positions(_pool(["train", "test"]), cfg.limit_frames)
