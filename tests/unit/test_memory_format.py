"""A CPU run's memory layout (benchmark.device, a preset's `cpu_memory_format`): applied where the
preset asks for it, part of the pretraining and job keys except at `contiguous`, the layout of every
run made before the setting existed, whose keys must stay as they were."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark.device import channels_last
from benchmark.errors import UserError
from benchmark.pretrain.config import PretrainConfig
from protocols.grid import Init, job_encoder, make_track
from protocols.presets import load_preset, pretrain_settings

ROOT = Path(__file__).resolve().parents[2]
CPU_TRACK = ROOT / "leaderboard" / "results" / "synthetic-efficientnet_lite0-48px-cpu"


def test_the_cpu_track_s_committed_checkpoints_keep_their_keys():
    """The key the cpu preset gives today is the one each committed run recorded (else a clean clone would
    pretrain every run anew and rerun every job): a layout or pretraining setting changed in the preset
    without rerunning the track fails here."""
    preset = load_preset("cpu")
    checked = 0
    for method in ("simclr", "vicreg"):
        for path in sorted((CPU_TRACK / method / "linear_probe" / "1pct").glob("pretrain-seed*/seed0.json")):
            made = json.loads(path.read_text())["init"]["pretrain"]
            cfg = PretrainConfig.from_dict({"method": method, **pretrain_settings(preset, method),
                                            "seed": made["seed"]}).validate()
            assert cfg.key(made["data_subset_fingerprint"]) == made["config_key"], path
            checked += 1
    assert checked == 10


def test_the_layout_is_in_the_pretraining_key_unless_it_is_the_earlier_one():
    contiguous = PretrainConfig(method="vicreg", cpu_memory_format="contiguous")
    default = PretrainConfig(method="vicreg")
    assert default.cpu_memory_format == "channels_last"
    assert default.key("d") != contiguous.key("d")
    # At `contiguous` the key is the one computed before the field existed: the same payload without it.
    import hashlib

    from benchmark.pretrain.config import ENGINE_VERSION
    payload = {k: v for k, v in vars(contiguous).items() if k not in ("compile", "cpu_memory_format")}
    payload.update(hparams=contiguous.resolved_hparams(), data="d", engine=ENGINE_VERSION)
    earlier = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    assert contiguous.key("d") == earlier
    with pytest.raises(UserError, match="cpu_memory_format must be one of channels_last, contiguous"):
        PretrainConfig(method="vicreg", cpu_memory_format="nhwc").validate()


def test_a_track_records_and_keys_its_layout_unless_it_is_the_earlier_one():
    old = make_track("synthetic", "synthetic", "efficientnet_lite0", 48, "cpu", cpu_memory_format="contiguous")
    new = make_track("synthetic", "synthetic", "efficientnet_lite0", 48, "cpu", cpu_memory_format="channels_last")
    assert "cpu_memory_format" not in old.record()
    assert new.record()["cpu_memory_format"] == "channels_last"
    assert old.id == new.id  # one track: its jobs are rerun, not put beside the old ones
    from protocols import keys

    args = ("name", "imagenet:efficientnet_lite0", {"downstream": "fp"})
    assert keys.job_key({}, *args, old.record(), 0.1, 0, 0) != keys.job_key({}, *args, new.record(), 0.1, 0, 0)


def test_a_preset_with_a_bad_layout_names_the_file_key_and_choices(tmp_path):
    text = (ROOT / "protocols" / "presets" / "smoke.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('resolution = 48\n', 'resolution = 48\ncpu_memory_format = "nhwc"\n', 1))
    with pytest.raises(UserError, match=rf"{bad}: key 'cpu_memory_format' must be one of channels_last, contiguous"):
        load_preset(str(bad))
    assert load_preset("smoke")["pretrain"]["cpu_memory_format"] == "channels_last"  # the default


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_evaluation_builds_the_encoder_in_the_track_s_layout(layout):
    from types import SimpleNamespace

    track = make_track("synthetic", "synthetic", "efficientnet_lite0", 48, "x", cpu_memory_format=layout)
    job = SimpleNamespace(init=Init(name="random", kind="baseline", backbone="efficientnet_lite0", pretrain_seed=0),
                          track=track)
    encoder = job_encoder(job, torch.device("cpu"))
    # Kernels of more than one input channel and pixel, whose strides tell the two layouts apart.
    convs = [m.weight for m in encoder.modules()
             if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[-1] > 1]
    nhwc = [w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs]
    assert convs and all(nhwc) == (layout == "channels_last") and any(nhwc) == (layout == "channels_last")
    assert channels_last("cuda", layout) is False  # a GPU's protocol paths are left as they are


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_pretraining_trains_in_the_config_s_layout_and_records_it(tmp_path, monkeypatch, layout):
    import benchmark.backbones
    from benchmark.checkpoint import read_meta
    from benchmark.pretrain.run import pretrain
    from tests.fake_source import tiny_pool
    from tests.unit.downstream_fakes import TinyEncoder

    built = []
    monkeypatch.setattr(benchmark.backbones, "build_backbone", lambda *a, **k: built.append(TinyEncoder()) or built[-1])
    cfg = PretrainConfig(method="vicreg", resolution=16, steps=2, batch_size=4, cpu_memory_format=layout,
                         hparams={"proj_hidden_dim": 16, "proj_output_dim": 8})
    final = pretrain(cfg, tiny_pool(tmp_path / "pool"), tmp_path / "runs", progress=False)
    trained = built[0].body[3].weight  # the encoder the steps ran on (an 8 → 8 channel 3×3 kernel)
    assert (trained.is_contiguous(memory_format=torch.channels_last) and not trained.is_contiguous()) == \
        (layout == "channels_last")
    assert read_meta(final).get("cpu_memory_format") == (None if layout == "contiguous" else layout)
