"""A start is part of the checkpoint and job keys, so two starts never share a checkpoint or a result, while
every from-random key stays what the committed results recorded; a preset's `start` and `[pretrain.continued]`
recipe reach continued runs only; a result's name and recorded start must agree."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from benchmark.errors import UserError
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.run import run_folder
from leaderboard.results import continued_name, init_method, init_start, init_title
from leaderboard.validate import check_result
from protocols.keys import record_key
from protocols.presets import load_preset, pretrain_settings
from protocols.spec import known_protocol_hashes

ROOT = Path(__file__).resolve().parents[2]
# A committed from-random result: its job key and its checkpoint's config key are pinned here.
COMMITTED = (ROOT / "leaderboard" / "results" / "synthetic-efficientnet_lite0-48px-cpu" / "simclr" / "linear_probe"
             / "10pct" / "pretrain-seed0" / "seed0.json")
PINNED_JOB_KEY = "57c289fdbac61c4da1ccc2cedab6fea53e207523cfd312c2880a8db7f27342d5"


def _committed() -> dict:
    return json.loads(COMMITTED.read_text())


def _preset(tmp_path: Path, extra: str) -> dict:
    text = (ROOT / "protocols" / "presets" / "cpu-v3.toml").read_text()  # a preset without a continued recipe
    path = tmp_path / "continued.toml"
    path.write_text(text.replace("[pretrain]\n", "[pretrain]\n" + extra, 1) if extra.startswith("start")
                    else text + "\n" + extra)
    return load_preset(str(path))


def test_init_names_carry_the_start_and_split_back():
    assert continued_name("simclr", "random") == "simclr"  # from random weights: the method's own name
    assert continued_name("simclr", "imagenet") == "simclr@imagenet"
    assert (init_method("simclr@imagenet"), init_start("simclr@imagenet")) == ("simclr", "imagenet")
    assert (init_method("simclr"), init_start("simclr"), init_start("imagenet")) == ("simclr", "random", "random")
    assert init_title("simclr@imagenet") == "simclr ← imagenet" and init_title("simclr") == "simclr"
    with pytest.raises(ValueError, match="random, imagenet"):
        continued_name("simclr", "dino")


def test_a_committed_from_random_result_keeps_its_job_and_checkpoint_keys():
    record = _committed()
    assert record["job"]["key"] == PINNED_JOB_KEY == record_key(record)
    assert "start" not in record["init"] and record["init"]["name"] == "simclr"
    made = record["init"]["pretrain"]
    cfg = PretrainConfig.from_dict({"method": "simclr", **pretrain_settings(load_preset("cpu"), "simclr"),
                                    "seed": made["seed"]}).validate()
    assert cfg.init == "random" and cfg.key(made["data_subset_fingerprint"]) == made["config_key"]


def test_the_same_job_continued_from_imagenet_has_another_key():
    record = _committed()
    continued = copy.deepcopy(record)
    continued["job"]["init"] = continued["init"]["name"] = "simclr@imagenet"
    continued["init"]["start"] = "imagenet"
    # Even with the same checkpoint hash (it never is: the start is in the checkpoint key), the name differs.
    assert record_key(continued) != record_key(record)


def test_the_start_and_the_continued_recipe_are_in_the_checkpoint_key_only_for_continued_runs(tmp_path):
    preset = _preset(tmp_path, "[pretrain.continued]\nencoder_lr_scale = 0.1\nhead_warmup_steps = 20\n")
    plain = load_preset("cpu-v3")
    # A preset's continued recipe leaves its from-random runs exactly as they were.
    assert pretrain_settings(preset, "simclr") == pretrain_settings(plain, "simclr")
    continued = pretrain_settings(preset, "simclr", "imagenet")
    assert continued["init"] == "imagenet"
    assert continued["hparams"] == {**pretrain_settings(plain, "simclr").get("hparams", {}),
                                    "encoder_lr_scale": 0.1, "head_warmup_steps": 20}
    configs = {name: PretrainConfig.from_dict({"method": "simclr", **settings, "seed": 0}).validate()
               for name, settings in (("random", pretrain_settings(preset, "simclr")), ("continued", continued),
                                      ("imagenet, no recipe", pretrain_settings(plain, "simclr", "imagenet")))}
    keys = {name: cfg.key("d") for name, cfg in configs.items()}
    assert len(set(keys.values())) == 3, keys
    folders = {name: run_folder(cfg, keys[name], tmp_path).name for name, cfg in configs.items()}
    assert folders["random"].startswith("simclr-") and folders["continued"].startswith("simclr@imagenet-")
    # The knobs enter the resolved hyper-parameters (and so the key) only when given.
    assert "encoder_lr_scale" not in configs["imagenet, no recipe"].resolved_hparams()
    assert configs["continued"].resolved_hparams()["head_warmup_steps"] == 20


def test_a_method_s_own_continued_recipe_replaces_the_common_one_for_that_method_alone(tmp_path):
    preset = _preset(tmp_path, '[pretrain.continued]\nencoder_lr_scale = 0.1\nencoder_bn = "frozen"\n\n'
                               '[pretrain.method_continued.simclr]\nencoder_lr_scale = 0.1\n')
    plain = pretrain_settings(load_preset("cpu-v3"), "simclr").get("hparams", {})
    # The method's table is its whole recipe (not merged with the common one: no encoder_bn=frozen)...
    assert pretrain_settings(preset, "simclr", "imagenet")["hparams"] == {**plain, "encoder_lr_scale": 0.1}
    # ...the other methods keep the common one, and runs from random weights neither.
    assert pretrain_settings(preset, "vicreg", "imagenet")["hparams"]["encoder_bn"] == "frozen"
    assert pretrain_settings(preset, "simclr") == pretrain_settings(load_preset("cpu-v3"), "simclr")
    # The cpu track's choice: SimCLR and Barlow Twins with the recipes their validation scores chose.
    cpu = load_preset("cpu")
    assert pretrain_settings(cpu, "simclr", "imagenet")["hparams"] == {"encoder_lr_scale": 0.1}
    bt = pretrain_settings(cpu, "barlowtwins", "imagenet")["hparams"]
    assert bt["encoder_lr_scale"] == 0.1 and bt["head_warmup_steps"] == 30 and "encoder_bn" not in bt
    assert pretrain_settings(cpu, "ae", "imagenet")["hparams"] == {"encoder_lr_scale": 0.1, "encoder_bn": "frozen"}


def test_a_preset_can_start_its_track_from_imagenet_and_the_command_line_wins(tmp_path):
    preset = _preset(tmp_path, 'start = "imagenet"\n')
    assert pretrain_settings(preset, "vicreg")["init"] == "imagenet"
    assert "init" not in pretrain_settings(preset, "vicreg", "random")


@pytest.mark.parametrize(("extra", "message"), [
    ('init = "imagenet"\n', "key 'init' is named 'start' in a preset"),
    ('start = "dino"\n', "key 'pretrain.start' must be one of random, imagenet, got 'dino'"),
    ("[pretrain.continued]\nlr = 0.1\n", "[pretrain.continued]: unknown knob 'lr': a continued recipe takes"),
    ("[pretrain.method_continued.simclr]\nlr = 0.1\n",
     "[pretrain.method_continued.simclr]: unknown knob 'lr': a continued recipe takes"),
    ("[pretrain.method_continued.simclrr]\nencoder_lr_scale = 0.1\n", "unknown key 'simclrr' (did you mean 'simclr'?)"),
    ("[pretrain.method_continued]\nsimclr = 0.1\n", "'pretrain.method_continued' must be a table of tables"),
    ('[pretrain.continued]\nencoder_bn = "eval"\n', "encoder_bn must be one of train, frozen, got 'eval'"),
])
def test_bad_start_settings_in_a_preset_are_named_with_the_fix(tmp_path, extra, message):
    text = (ROOT / "protocols" / "presets" / "cpu-v3.toml").read_text()  # a preset without a continued recipe
    path = tmp_path / "bad.toml"
    path.write_text(text.replace("[pretrain]\n", "[pretrain]\n" + extra, 1) if not extra.startswith("[")
                    else text + "\n" + extra)
    with pytest.raises(UserError, match=re.escape(message)):
        load_preset(str(path))


def test_validate_checks_that_a_results_name_and_recorded_start_agree():
    record = _committed()
    known = known_protocol_hashes()
    assert check_result(record, COMMITTED, known) == []
    lying = copy.deepcopy(record)
    lying["init"]["start"] = "imagenet"  # a from-random name that claims a start
    assert ("init.start", "'imagenet' but the init's name 'simclr' says it started from 'random' (a continued "
                          "init is named <method>@<start>)") in check_result(lying, COMMITTED, known)


def test_a_continued_checkpoint_is_named_after_its_start_and_a_name_that_contradicts_it_is_refused(tmp_path):
    from benchmark.backbones import build_backbone
    from benchmark.checkpoint import save_encoder
    from benchmark.track import explicit_checkpoint_init

    path = tmp_path / "encoder.safetensors"
    save_encoder(path, build_backbone("efficientnet_lite0"), {"method": "simclr", "init": "imagenet", "seed": 0,
                                                               "resolution": 32})
    init = explicit_checkpoint_init("simclr@imagenet", path, [0])
    assert (init.name, init.family, init.record()["start"]) == ("simclr@imagenet", "contrastive", "imagenet")
    with pytest.raises(UserError, match="was pretrained from imagenet weights, but the name 'simclr' says random: "
                                        "name it simclr@imagenet"):
        explicit_checkpoint_init("simclr", path, [0])
