"""Protocol specs refuse bad settings clearly. Every range a setting must respect is checked on both
sides of its boundary: a preset's overrides go through the same checks as the file, so each case
overrides one setting of the shipped protocol and expects either the exact error message or a valid
spec. Errors in the file itself, or in the overrides' keys, name the file or the protocol and the key."""
from __future__ import annotations

import re

import pytest

from benchmark.errors import UserError
from protocols.spec import PROTOCOL_DIR, load_protocol, read_protocol_file

FRACTION = "key 'fractions' must lie in (0, 1], got "
REPEAT = "key {!r} must not repeat values"
METRIC = "key '{}.select_metric' must be one of macro_f1, balanced_accuracy, accuracy"
PROBE = "'probe.l2_grid' must be > 0 (a unique, seed-free solution), 'probe.max_iter' and 'features.batch_size' >= 1"
TRAIN = "'train.lr_grid' values must be > 0, 'train.weight_decay' and 'train.warmup_epochs' >= 0"
HEAD = "'head.l2_grid' values must be > 0 and 'head.max_iter' >= 1"
SCALE = "need 0 < 'augment.scale_min' <= 'augment.scale_max' <= 1"
SEEDS = "key 'seeds' must be distinct integers >= 0"
STEPS = "'pretrain_steps' must be >= 1 and 'batch_size' >= 2"
LEVELS = "needs at least 3 distinct levels in increasing order, got "
SUBSET = "every level needs 1 <= subjects <= frames, got "
KNN_BATCH = "'knn.query_batch_size' and 'features.batch_size' must be >= 1"
SMALL = "; lower the batch size or raise the frame budget"
BUDGETS = "key 'budgets' needs at least 2 distinct pretraining budgets (steps) in increasing order, e.g. [150, 300, 600, 1200]; got "

CASES = [
    # (protocol, overrides, the error message after its '<file> (with overrides …): ' prefix, or None)
    ('linear_probe', {'fractions': [0.0, 0.5]}, FRACTION + '[0.0]'),
    ('linear_probe', {'fractions': [1.0]}, None),
    ('linear_probe', {'fractions': [1.01]}, FRACTION + '[1.01]'),
    ('linear_probe', {'fractions': [0.1, 0.1]}, REPEAT.format('fractions')),
    ('linear_probe', {'seeds': [3, 3]}, REPEAT.format('seeds')),
    ('linear_probe', {'pretrain_seeds': [1, 1]}, REPEAT.format('pretrain_seeds')),
    ('linear_probe', {'pretrain_seeds': [-1]}, "key 'pretrain_seeds' must be >= 0"),
    ('linear_probe', {'pretrain_seeds': [0]}, None),
    ('linear_probe', {'seeds': [-1, 0]}, "key 'seeds' must be >= 0"),
    ('linear_probe', {'seeds': [0]}, None),
    ('linear_probe', {'probe': {'select_metric': 'auroc'}}, METRIC.format('probe')),
    ('linear_probe', {'probe': {'select_metric': 'accuracy'}}, None),
    ('linear_probe', {'probe': {'l2_grid': [-0.001, 0.1]}}, PROBE),
    ('linear_probe', {'probe': {'l2_grid': [0.0]}}, PROBE),
    ('linear_probe', {'probe': {'l2_grid': [1e-9]}}, None),
    ('linear_probe', {'probe': {'max_iter': 0}}, PROBE),
    ('linear_probe', {'probe': {'max_iter': 1}}, None),
    ('linear_probe', {'features': {'batch_size': 0}}, PROBE),
    ('linear_probe', {'features': {'batch_size': 1}}, None),
    ('finetune', {'train': {'select_metric': 'loss'}}, METRIC.format('train')),
    ('finetune', {'train': {'epochs': 0}}, "key 'train.epochs' must be >= 1"),
    ('finetune', {'train': {'batch_size': 0}}, "key 'train.batch_size' must be >= 1"),
    ('finetune', {'train': {'min_steps_per_epoch': 0}}, "key 'train.min_steps_per_epoch' must be >= 1"),
    ('finetune', {'train': {'epochs': 1, 'batch_size': 1, 'min_steps_per_epoch': 1}}, None),
    ('finetune', {'train': {'lr_grid': [0.1, 0.0]}}, TRAIN),
    ('finetune', {'train': {'weight_decay': -1e-06}}, TRAIN),
    ('finetune', {'train': {'warmup_epochs': -1}}, TRAIN),
    ('finetune', {'train': {'weight_decay': 0.0, 'warmup_epochs': 0, 'lr_grid': [1e-09]}}, None),
    ('finetune', {'train': {'optimizer': 'lamb'}}, "key 'train.optimizer' must be one of sgd, adamw, got 'lamb'"),
    ('finetune', {'train': {'optimizer': 'adamw'}}, None),
    ('finetune', {'head': {'init': 'zeros'}}, "key 'head.init' must be one of linear_probe, random, got 'zeros'"),
    ('finetune', {'head': {'init': 'random'}}, None),
    ('finetune', {'head': {'l2_grid': [0.0]}}, HEAD),
    ('finetune', {'head': {'max_iter': 0}}, HEAD),
    ('finetune', {'head': {'l2_grid': [1e-9], 'max_iter': 1}}, None),
    ('finetune', {'augment': {'scale_min': 0.0}}, SCALE),
    ('finetune', {'augment': {'scale_min': 0.9, 'scale_max': 0.8}}, SCALE),
    ('finetune', {'augment': {'scale_max': 1.01}}, SCALE),
    ('finetune', {'augment': {'scale_min': 1.0, 'scale_max': 1.0}}, None),
    ('finetune', {'augment': {'hflip': 1.5}}, "key 'augment.hflip' is a probability in [0, 1]"),
    ('finetune', {'augment': {'vflip': -0.1}}, "key 'augment.vflip' is a probability in [0, 1]"),
    ('finetune', {'augment': {'hflip': 1.0, 'vflip': 0.0}}, None),
    ('variance_vs_size', {'fraction': 0.0}, "key 'fraction' must lie in (0, 1], got 0.0"),
    ('variance_vs_size', {'fraction': 1.01}, "key 'fraction' must lie in (0, 1], got 1.01"),
    ('variance_vs_size', {'fraction': 1.0}, None),
    ('knn', {'knn': {'k_grid': [5, 5]}}, REPEAT.format('knn.k_grid')),
    ('knn', {'knn': {'temperature_grid': [0.1, 0.1]}}, REPEAT.format('knn.temperature_grid')),
    ('knn', {'knn': {'k_grid': [0, 5]}}, "key 'knn.k_grid' values must be >= 1 (neighbours), got [0, 5]"),
    ('knn', {'knn': {'k_grid': [1]}}, None),
    ('knn', {'knn': {'temperature_grid': [0.0, 0.1]}}, "key 'knn.temperature_grid' values must be > 0, got [0.0, 0.1]"),
    ('knn', {'knn': {'query_batch_size': 0}}, KNN_BATCH),
    ('knn', {'knn': {'query_batch_size': 1}}, None),
    ('knn', {'features': {'batch_size': 0}}, KNN_BATCH),
    ('knn', {'features': {'batch_size': 1}}, None),
    ('variance_vs_size', {'seeds': [1, 1]}, SEEDS),
    ('variance_vs_size', {'seeds': [-1]}, SEEDS),
    ('variance_vs_size', {'seeds': [0]}, None),
    ('variance_vs_size', {'eval_protocols': ['linear_probe', 'svm']},
     "key 'eval_protocols' must name protocols among linear_probe, finetune, knn, got ['svm']"),
    ('variance_vs_size', {'eval_protocols': ['knn']}, None),
    ('variance_vs_size', {'eval_protocols': ['finetune']}, None),
    ('variance_vs_size', {'pretrain_steps': 0}, STEPS),
    ('variance_vs_size', {'batch_size': 1}, STEPS),
    ('variance_vs_size', {'pretrain_steps': 1, 'batch_size': 2}, None),
    ('variance_vs_size', {'diversity': {'subjects': [4, 8]}},
     "key 'diversity.subjects' " + LEVELS + '[4, 8]'),
    ('variance_vs_size', {'diversity': {'subjects': [4, 4, 8]}},
     "key 'diversity.subjects' " + LEVELS + '[4, 4, 8]'),
    ('variance_vs_size', {'diversity': {'subjects': [8, 4, 16]}},
     "key 'diversity.subjects' " + LEVELS + '[8, 4, 16]'),
    ('variance_vs_size', {'size': {'frames': [96, 384]}}, "key 'size.frames' " + LEVELS + '[96, 384]'),
    ('variance_vs_size', {'size': {'frames': [384, 192, 96]}},
     "key 'size.frames' " + LEVELS + '[384, 192, 96]'),
    ('variance_vs_size', {'diversity': {'subjects': [0, 8, 16]}}, SUBSET + '0 subjects for 384 frames'),
    ('variance_vs_size', {'diversity': {'subjects': [4, 8, 16], 'frames': 12}, 'batch_size': 2},
     SUBSET + '16 subjects for 12 frames'),
    ('variance_vs_size', {'diversity': {'subjects': [1, 2, 64], 'frames': 64}, 'batch_size': 64}, None),
    ('variance_vs_size', {'size': {'subjects': 4, 'frames': [63, 96, 192]}, 'batch_size': 64},
     "a subset of 63 frames is smaller than 'batch_size' 64" + SMALL),
    ('variance_vs_size', {'diversity': {'subjects': [4, 8, 16], 'frames': 32}, 'batch_size': 33},
     "a subset of 32 frames is smaller than 'batch_size' 33" + SMALL),
    ('learning_curve', {'budgets': [150]}, BUDGETS + '[150]'),
    ('learning_curve', {'budgets': [300, 150]}, BUDGETS + '[300, 150]'),
    ('learning_curve', {'budgets': [150, 150, 300]}, BUDGETS + '[150, 150, 300]'),
    ('learning_curve', {'budgets': [0, 150]}, "key 'budgets' must be >= 1 (optimiser steps), got [0, 150]"),
    ('learning_curve', {'budgets': [1, 2]}, None),
    ('learning_curve', {'fraction': 0.0}, "key 'fraction' must lie in (0, 1], got 0.0"),
    ('learning_curve', {'fraction': 1.01}, "key 'fraction' must lie in (0, 1], got 1.01"),
    ('learning_curve', {'fraction': 1.0}, None),
    ('learning_curve', {'seeds': [1, 1]}, SEEDS),
    ('learning_curve', {'pretrain_seeds': [-1]}, "key 'pretrain_seeds' must be distinct integers >= 0"),
    ('learning_curve', {'seeds': [0], 'pretrain_seeds': [0]}, None),
    ('learning_curve', {'eval_protocols': ['svm']},
     "key 'eval_protocols' must name protocols among linear_probe, finetune, knn, got ['svm']"),
    ('learning_curve', {'eval_protocols': ['knn', 'knn']}, "key 'eval_protocols' must not repeat a protocol, got ['knn', 'knn']"),
    ('learning_curve', {'eval_protocols': ['knn', 'finetune']}, None),
    ('learning_curve', {'methods': ['simclr', 'simclr']}, "key 'methods' must not repeat a method, got ['simclr', 'simclr']"),
    ('learning_curve', {'methods': ['simclr']}, None),
    ('cross_scanner', {'fractions': [0.0, 0.5]}, FRACTION + '[0.0]'),
    ('cross_scanner', {'seeds': [0, 0]}, REPEAT.format('seeds')),
    ('cross_scanner', {'eval_protocols': ['linear_probe', 'svm']},
     "key 'eval_protocols' may name linear_probe, finetune, knn, got ['svm']"),
    ('cross_scanner', {'eval_protocols': ['knn', 'knn']}, "key 'eval_protocols' must not repeat a protocol, got ['knn', 'knn']"),
    ('cross_scanner', {'eval_protocols': ['linear_probe']}, None),
    ('cross_scanner', {'eval_protocols': ['finetune', 'knn']}, None),
    ('cross_scanner', {'min_scanners': 1},
     "key 'min_scanners' must be >= 2 (one scanner to hold out, one to train on)"),
    ('cross_scanner', {'min_scanners': 2}, None),
]


@pytest.mark.parametrize(("name", "overrides", "error"), CASES,
                         ids=[f"{n}-{sorted(o)[0]}-{i}" for i, (n, o, _) in enumerate(CASES)])
def test_each_setting_is_checked_at_its_boundary(name, overrides, error):
    if error is None:
        spec = load_protocol(name, overrides)
        for key, value in overrides.items():
            got = spec.settings[key]
            assert got == ({**got, **value} if isinstance(value, dict) else value)
        return
    with pytest.raises(UserError) as info:
        load_protocol(name, overrides)
    assert str(info.value) == f"{PROTOCOL_DIR / f'{name}.toml'} (with overrides {overrides}): {error}"


@pytest.mark.parametrize(("version", "ok"), [(0, False), (-3, False), (1, True), (7, True)])
@pytest.mark.parametrize("name", ["linear_probe", "variance_vs_size", "learning_curve"])
def test_the_version_is_at_least_one(tmp_path, name, version, ok):
    text = re.sub(r"(?m)^version = \d+", f"version = {version}", (PROTOCOL_DIR / f"{name}.toml").read_text())
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    if ok:
        assert read_protocol_file(path)["version"] == version
    else:
        with pytest.raises(UserError, match=rf"{re.escape(str(path))}: key 'version' must be >= 1"):
            read_protocol_file(path)


def test_settings_are_a_copy_of_the_overrides_not_an_alias():
    spec = load_protocol("linear_probe", {"seeds": [0, 1], "probe": {"l2_grid": [0.1]}})
    spec.settings["seeds"].append(2)
    spec.settings["probe"]["l2_grid"].append(1.0)
    assert spec.overrides == {"seeds": [0, 1], "probe": {"l2_grid": [0.1]}}  # what the job key records


@pytest.fixture
def protocol_dir(tmp_path, monkeypatch):
    """An empty protocols folder in place of the shipped one."""
    import protocols.spec

    monkeypatch.setattr(protocols.spec, "PROTOCOL_DIR", tmp_path)
    return tmp_path


def _shipped(name: str) -> str:
    return (PROTOCOL_DIR / f"{name}.toml").read_text()


def test_file_errors_name_the_file_and_what_is_wrong(protocol_dir):
    path = protocol_dir / "linear_probe.toml"
    with pytest.raises(UserError) as info:
        load_protocol("linear_probe")
    assert str(info.value) == f"protocol file {path} does not exist"

    path.write_text(_shipped("finetune"))
    with pytest.raises(UserError) as info:
        load_protocol("linear_probe")
    assert str(info.value) == f"{path}: key 'name' is 'finetune' but the file is for 'linear_probe'"

    path.write_text(_shipped("linear_probe").replace('name = "linear_probe"', 'name = "svm"'))
    with pytest.raises(UserError) as info:
        load_protocol("linear_probe")
    assert str(info.value) == f"{path}: key 'name' must be one of linear_probe, finetune, knn, variance_vs_size, cross_scanner, learning_curve, continued_recipe, positives, got 'svm'"

    path.write_text("name = \n")
    with pytest.raises(UserError) as info:
        load_protocol("linear_probe")
    assert str(info.value).startswith(f"{path}: not valid TOML (")

    path.write_text(re.sub(r"(?m)^fractions = .*$", "fractions = [1.5]", _shipped("linear_probe")))
    with pytest.raises(UserError) as info:
        load_protocol("linear_probe")  # no overrides: the message names the file alone
    assert str(info.value) == f"{path}: key 'fractions' must lie in (0, 1], got [1.5]"


def test_override_errors_name_the_protocol_and_the_key():
    prefix = "overrides of protocol 'linear_probe': "
    cases = [({"version": 2}, "key 'version' cannot be overridden"),
             ({"name": "finetune"}, "key 'name' cannot be overridden"),
             ({"probe": 3}, "key 'probe' must be a table, got int"),
             ({"probe": {"zzz": 1}}, "unknown key 'probe.zzz' (known keys: probe.solver, probe.l2_grid, "
                                     "probe.max_iter, probe.tolerance, probe.class_weighted, probe.select_metric)"),
             ({"probe": {"max_iters": 1}}, "unknown key 'probe.max_iters' (did you mean 'probe.max_iter'?)")]
    for overrides, message in cases:
        with pytest.raises(UserError) as info:
            load_protocol("linear_probe", overrides)
        assert str(info.value) == prefix + message


def test_a_spec_keeps_its_file_and_its_own_copy_of_the_overrides():
    overrides = {"probe": {"l2_grid": [0.1]}, "seeds": [0]}
    spec = load_protocol("linear_probe", overrides)
    assert spec.path == PROTOCOL_DIR / "linear_probe.toml"
    overrides["probe"]["l2_grid"] = [9.0]  # the caller's preset table changes afterwards
    overrides["seeds"].append(1)
    assert spec.overrides == {"probe": {"l2_grid": [0.1]}, "seeds": [0]}
    assert spec.key["overrides"] == {"probe": {"l2_grid": [0.1]}}  # how a job runs, not which jobs run


@pytest.mark.parametrize(("name", "key", "value", "type_name"), [
    ("linear_probe", "fractions", [], "list[float]"),
    ("linear_probe", "fractions", ["0.1"], "list[float]"),
    ("linear_probe", "fractions", 0.1, "list[float]"),
    ("linear_probe", "seeds", [], "list[int]"),
    ("linear_probe", "seeds", [0.5], "list[int]"),
    ("linear_probe", "seeds", [True], "list[int]"),
    ("variance_vs_size", "eval_protocols", [], "list[str]"),
    ("variance_vs_size", "eval_protocols", [1], "list[str]"),
    ("variance_vs_size", "pretrain_steps", 1.0, "int"),
    ("variance_vs_size", "fraction", "0.1", "float"),
    ("learning_curve", "budgets", [150.0, 300.0], "list[int]"),
    ("learning_curve", "budgets", 150, "list[int]"),
    ("learning_curve", "methods", "simclr", "list[str]"),
])
def test_a_value_of_the_wrong_type_is_named_with_the_type_expected(name, key, value, type_name):
    with pytest.raises(UserError) as info:
        load_protocol(name, {key: value})
    assert str(info.value) == (f"overrides of protocol {name!r}: key {key!r} must be {type_name}, "
                               f"got {value!r} ({type(value).__name__})")


def test_an_integer_is_a_fine_float():
    assert load_protocol("finetune", {"train": {"lr_grid": [1]}}).settings["train"]["lr_grid"] == [1]
    assert load_protocol("linear_probe", {"fractions": [1]}).fractions == [1]
