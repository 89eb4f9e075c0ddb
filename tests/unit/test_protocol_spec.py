import json
import re
import tomllib

import pytest

from benchmark.errors import UserError
from protocols.presets import PRESETS, load_preset, preset_path, pretrain_settings, resolve_preset
from protocols.spec import PROTOCOL_DIR, PROTOCOLS, canonical_hash, load_protocol, read_protocol_file


def _write(tmp_path, text: str):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def _original(name: str) -> str:
    return (PROTOCOL_DIR / f"{name}.toml").read_text()


@pytest.mark.parametrize("name", PROTOCOLS)
def test_shipped_protocols_load_with_the_label_fractions_and_five_seeds(name):
    spec = load_protocol(name)
    assert spec.fractions == [0.01, 0.1, 1.0]
    assert spec.seeds == [0, 1, 2, 3, 4]
    assert spec.version >= 1 and len(spec.hash) == 64


@pytest.mark.parametrize("name", PROTOCOLS)
def test_hash_is_the_canonical_json_of_the_parsed_file_and_ignores_formatting(tmp_path, name):
    text = _original(name)
    spec = load_protocol(name)
    parsed = tomllib.loads(text)
    assert spec.hash == canonical_hash(parsed)
    assert spec.hash == __import__("hashlib").sha256(
        json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    # Comments, blank lines and key order do not change it.
    head, rest = text[:text.index("\n[")], text[text.index("\n["):]
    keys = [ln for ln in head.splitlines() if "=" in ln and not ln.startswith("#")]
    assert len(keys) == 5  # name, version, fractions, seeds, pretrain_seeds — reversed, comments dropped
    reordered = "\n".join(reversed(keys))
    path = _write(tmp_path, "# another comment\n" + reordered + "\n" + rest)
    assert canonical_hash(read_protocol_file(path)) == spec.hash
    assert load_protocol(name).hash == spec.hash  # stable across loads


def test_hash_changes_with_content(tmp_path):
    text = _original("finetune")
    changed = text.replace("epochs = 20", "epochs = 21")
    assert changed != text
    base = canonical_hash(read_protocol_file(_write(tmp_path, text)))
    assert canonical_hash(read_protocol_file(_write(tmp_path, changed))) != base


@pytest.mark.parametrize("edit, message", [
    (lambda t: re.sub(r"\nmax_iter = \d+[^\n]*", "", t), r"missing key 'probe.max_iter'"),
    (lambda t: re.sub(r"\nmax_iter = \d+", "\nmax_iters = 200", t), r"unknown key 'probe.max_iters'.*did you mean 'probe.max_iter'"),
    (lambda t: re.sub(r"\nmax_iter = \d+", '\nmax_iter = "200"', t), r"key 'probe.max_iter' must be int"),
    (lambda t: t.replace("pretrain_seeds = [0, 1, 2]", "pretrain_seeds = [0, 0]"), r"key 'pretrain_seeds' must not repeat"),
    (lambda t: t.replace("l2_grid = [", "l2_grid = [0.0, "), r"'probe.l2_grid' must be > 0"),
    (lambda t: t.replace("standardize = true", "standardize = 1"), r"key 'features.standardize' must be bool"),
    (lambda t: t.replace("fractions = [0.01, 0.1, 1.0]", "fractions = [0.01, 1.5]"), r"'fractions' must lie in \(0, 1\]"),
    (lambda t: t.replace("version = 2", "verison = 2"), r"unknown key 'verison'.*did you mean 'version'"),
    (lambda t: t.replace('solver = "lbfgs"', 'solver = "sgd"'), r"'probe.solver' must be one of lbfgs"),
    (lambda t: t + "\n[extra]\nx = 1\n", r"unknown key 'extra'"),
])
def test_bad_protocol_files_name_the_key_and_the_file(tmp_path, edit, message):
    path = _write(tmp_path, edit(_original("linear_probe")))
    with pytest.raises(UserError, match=message) as info:
        read_protocol_file(path)
    assert str(path) in str(info.value)


def test_overrides_are_validated_merged_and_kept_beside_the_file_hash():
    base = load_protocol("finetune")
    spec = load_protocol("finetune", {"train": {"epochs": 2}})
    assert spec.settings["train"]["epochs"] == 2 and spec.settings["train"]["lr_grid"] == base.settings["train"]["lr_grid"]
    assert spec.hash == base.hash and spec.key != base.key
    with pytest.raises(UserError, match=r"unknown key 'train.epoch'.*did you mean 'train.epochs'"):
        load_protocol("finetune", {"train": {"epoch": 2}})
    with pytest.raises(UserError, match=r"'train.epochs' must be >= 1"):
        load_protocol("finetune", {"train": {"epochs": 0}})
    with pytest.raises(UserError, match="cannot be overridden"):
        load_protocol("finetune", {"version": 2})


def test_a_track_s_replicate_lists_choose_its_jobs_but_stay_out_of_their_key():
    # A track that adds pretraining runs or seeds keeps the keys of the jobs it has finished.
    spec = load_protocol("finetune", {"seeds": [0, 1], "train": {"epochs": 3}})
    grown = load_protocol("finetune", {"seeds": [0, 1, 2], "pretrain_seeds": [0, 1, 2, 3, 4], "fractions": [0.01],
                                       "train": {"epochs": 3}})
    assert grown.seeds != spec.seeds and grown.pretrain_seeds != spec.pretrain_seeds
    assert grown.key == spec.key == {"name": "finetune", "hash": spec.hash, "overrides": {"train": {"epochs": 3}}}
    assert load_protocol("finetune", {"seeds": [0, 1], "train": {"epochs": 4}}).key != spec.key  # how a job runs


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown protocol 'svm'.*linear_probe, finetune, knn"):
        load_protocol("svm")


@pytest.mark.parametrize("name", PRESETS)
def test_shipped_presets_load_and_feed_pretrain_config_fields(name):
    from benchmark.pretrain.config import PretrainConfig

    preset = load_preset(name)
    assert preset["pretrain"]["backbone"] == preset["backbone"]
    assert preset["pretrain"]["resolution"] == preset["resolution"]
    for method in ("vicreg", *preset["pretrain"].get("method_hparams", {})):
        PretrainConfig.from_dict({"method": method, **pretrain_settings(preset, method)}).validate()
    for proto, overrides in preset["protocols"].items():
        load_protocol(proto, overrides)


def test_the_smoke_and_standard_presets_keep_five_seeds_and_the_reference_backbone():
    for name in ("smoke", "standard"):
        preset = load_preset(name)
        assert preset["backbone"] == "efficientnet_lite0"
        for proto in PROTOCOLS:
            assert load_protocol(proto, preset["protocols"].get(proto)).seeds == [0, 1, 2, 3, 4]
    # Pretraining is replicated wherever a track claims anything; the smoke track pretrains once.
    for proto in PROTOCOLS:
        for track in ("standard", "cpu"):
            assert len(load_protocol(proto, load_preset(track)["protocols"].get(proto)).pretrain_seeds) >= 3
        assert load_protocol(proto, load_preset("smoke")["protocols"].get(proto)).pretrain_seeds == [0]
    paper = load_preset("paper")
    assert (paper["backbone"], paper["resolution"]) == ("resnet50", 256)
    assert paper["data"]["pretrain"]["options"]["stride"] == 5


def test_bad_presets_are_clear(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'fast'.*" + re.escape(", ".join(PRESETS))):
        load_preset("fast")
    text = preset_path("smoke").read_text()
    for edit, message in [
        (text.replace("[pretrain]\nsteps", "[pretrain]\nstep"), r"unknown key 'step'.*did you mean 'steps'"),
        (text.replace('backbone = "efficientnet_lite0"', 'backbone = "vit"'), "key 'backbone' must be one of"),
        (text.replace("epochs = 3", "epochs = 0"), r"\[protocols.finetune\].*'train.epochs' must be >= 1"),
        (text.replace("resolution = 48\n", ""), "missing key 'resolution'"),
    ]:
        path = tmp_path / "bad.toml"
        path.write_text(edit)
        with pytest.raises(UserError, match=message):
            load_preset(str(path))


def test_a_method_s_own_hyper_parameters_reach_only_that_method(tmp_path):
    from benchmark.pretrain.config import PretrainConfig

    # The smoke preset without its own method tables (its Barlow Twins pin), plus one for BYOL.
    smoke_text = re.sub(r"\[pretrain\.method_hparams\.\w+\]\n(\w+ = [^\n]+\n)+", "", preset_path("smoke").read_text())
    text = smoke_text.replace(
        "[pretrain]\nsteps = 150\n", "[pretrain]\nsteps = 150\nhparams = { warmup = 0.2 }\n"
    ) + "\n[pretrain.method_hparams.byol]\nlr = 4.0\n"
    path = tmp_path / "own.toml"
    path.write_text(text)
    preset = load_preset(str(path))
    byol, simclr = pretrain_settings(preset, "byol"), pretrain_settings(preset, "simclr")
    assert byol["hparams"] == {"warmup": 0.2, "lr": 4.0} and simclr["hparams"] == {"warmup": 0.2}
    assert "method_hparams" not in byol and byol["steps"] == simclr["steps"] == 150
    config = PretrainConfig.from_dict({"method": "byol", **byol}).validate()
    assert config.resolved_hparams()["lr"] == 4.0
    # The track's plain settings are the method's when it has none of its own (and the preset is untouched).
    smoke = load_preset("smoke")["pretrain"]
    assert pretrain_settings(load_preset("smoke"), "byol") == {k: v for k, v in smoke.items() if k != "method_hparams"}
    assert "lr" not in preset["pretrain"].get("hparams", {})
    for edit, message in [
        (text.replace("method_hparams.byol]", "method_hparams.byl]"), r"method_hparams\]: unknown key 'byl'.*'byol'"),
        (text.replace("lr = 4.0", "l = 4.0"), r"method_hparams.byol\]: method 'byol' has no hyper-parameter\(s\) l;"),
        (text.replace("lr = 4.0", "lr = \"fast\""), r"method_hparams.byol\]: .*lr expects float"),
        (text.replace("[pretrain.method_hparams.byol]\nlr = 4.0\n", "").replace(
            "steps = 150\n", "steps = 150\nmethod_hparams = 3\n", 1),
         "'pretrain.method_hparams' must be a table of tables"),
        (text.replace("[pretrain.method_hparams.byol]\nlr = 4.0\n", "").replace(
            "steps = 150\n", "steps = 150\nmethod_hparams = { byol = 4 }\n", 1),
         r"'pretrain.method_hparams.byol' must be a table of hyper-parameters"),
    ]:
        path.write_text(edit)
        with pytest.raises(UserError, match=message):
            load_preset(str(path))


def test_auto_preset_says_what_it_chose(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_preset("auto") == "smoke"
    assert "preset auto → smoke" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_preset("auto") == "standard"
    assert resolve_preset("paper") == "paper"


def test_an_ablation_evaluates_with_the_presets_overrides_then_its_own_settings():
    from protocols.spec import evaluation_specs

    preset = {"finetune": {"train": {"epochs": 3}, "seeds": [0, 1, 2]}, "knn": {"seeds": [7]}}
    specs = evaluation_specs(["linear_probe", "finetune"], preset, fractions=[0.01], seeds=[4, 5])
    assert [s.name for s in specs] == ["linear_probe", "finetune"]
    assert specs[0].overrides == {"fractions": [0.01], "seeds": [4, 5]}
    assert specs[1].overrides == {"train": {"epochs": 3}, "seeds": [4, 5], "fractions": [0.01]}  # the ablation's win
    assert specs[1].settings["train"]["epochs"] == 3 and specs[1].settings["train"]["batch_size"] == 64
