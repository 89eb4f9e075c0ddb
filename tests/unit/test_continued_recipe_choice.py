"""The continued-recipe ablation: its protocol file and checks, its records' keys and validation, and the
leaderboard's choice, which reads the validation split only (the issue's "never select on test")."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import UserError
from leaderboard import continued_recipe, render
from leaderboard.load import load_results
from leaderboard.results import record_parts
from leaderboard.validate import check_ablation, validate_paths
from protocols.continued_recipe import units
from protocols.keys import continued_recipe_key, job_key, record_key
from protocols.spec import known_protocol_hashes, load_protocol
from tests.unit.test_leaderboard import canonical_sha256, make_result, write_protocols
from tests.unit.test_learning_curve import _write

FRACTION = 0.1
DEFAULTS = {"encoder_lr_scale": 1.0, "encoder_bn": "train", "head_warmup_steps": 0}
RECIPES = {"method": {}, "gentle": {"encoder_lr_scale": 0.1},
           "gentle-frozen": {"encoder_lr_scale": 0.1, "encoder_bn": "frozen"}}
# Validation macro-F1 per (method, recipe); the test scores are made to disagree: they would choose "method".
VAL = {("simclr", "method"): 0.40, ("simclr", "gentle"): 0.70, ("simclr", "gentle-frozen"): 0.60,
       ("vicreg", "method"): 0.50, ("vicreg", "gentle"): 0.55, ("vicreg", "gentle-frozen"): 0.66}
TEST = {("simclr", "method"): 0.90, ("simclr", "gentle"): 0.30, ("simclr", "gentle-frozen"): 0.30,
        ("vicreg", "method"): 0.90, ("vicreg", "gentle"): 0.30, ("vicreg", "gentle-frozen"): 0.30}


def _protocols(root: Path) -> dict[str, str]:
    hashes = write_protocols(root)
    (root / "continued_recipe.toml").write_text('name = "continued_recipe"\nversion = 1\n')
    hashes["continued_recipe"] = canonical_sha256({"name": "continued_recipe", "version": 1})
    return hashes


def continued(record: dict) -> dict:
    """`record` as its method's run continued from ImageNet weights."""
    init = f"{record['init']['name']}@imagenet"
    record["job"]["init"] = record["init"]["name"] = init
    record["init"]["start"] = "imagenet"
    return record


def recipe_record(method: str, recipe: str, seed: int, hashes: dict, *, val: float | None = None,
                  test: float | None = None, pretrain_seed: int = 0) -> dict:
    """A continued-recipe result; `val`/`test`: its macro-F1 there (None: the metrics stay consistent with
    their confusion matrices, as a real run's are)."""
    r = continued(make_result(method, "linear_probe", FRACTION, seed, hashes, np.random.default_rng(seed),
                              pretrain_seed=pretrain_seed))
    for split, value in (("test", test), ("val", val)):
        if value is not None:
            r["metrics"][split]["macro_f1"] = value
    r["job"]["protocol"] = r["protocol"]["name"] = "continued_recipe"
    r["protocol"]["hash"] = hashes["continued_recipe"]
    knobs = {**DEFAULTS, **RECIPES[recipe]}
    r["ablation"] = {"axis": "recipe", "level": list(RECIPES).index(recipe), "recipe_name": recipe,
                     "recipe": knobs, "eval_protocol": "linear_probe", "eval_protocol_hash": hashes["linear_probe"]}
    r["init"]["checkpoint_hash"] = canonical_sha256(["ckpt", method, recipe, pretrain_seed])
    r["init"]["pretrain"] = {"steps": 150, "seed": pretrain_seed, "init": "imagenet",
                             "continued": {"start": "imagenet", "weights": "test", "recipe": knobs},
                             "diagnostics": {"encoder_change": 0.1, "problems": [],
                                             "after": {"knn_macro_f1": 0.5}}}
    r["job"]["key"] = canonical_sha256([method, recipe, pretrain_seed, seed])
    return r


@pytest.fixture()
def board(tmp_path):
    hashes = _protocols(tmp_path / "protocols")
    for (method, recipe), val in VAL.items():
        for seed in (0, 1):
            _write(tmp_path / "results", recipe_record(method, recipe, seed, hashes, val=val + 0.01 * seed,
                                                       test=TEST[method, recipe]))
    return tmp_path, hashes


def _runs(root: Path):
    return continued_recipe.expand(load_results(root / "results").ablation)


# ---------------------------------------------------------------- the protocol file


def test_the_shipped_protocol_tries_the_same_recipes_for_every_built_in_method():
    spec = load_protocol("continued_recipe")
    s = spec.settings
    assert s["methods"] == ["ae", "barlowtwins", "byol", "moco", "simclr", "simsiam", "vicreg"]
    assert s["recipes"]["method"] == {}  # the method's own recipe is a candidate: the evidence against it is shown
    assert len(s["recipes"]) >= 3 and s["eval_protocols"] == ["linear_probe"] and s["fraction"] == 0.1
    mine = units(spec, ["simclr", "vicreg"])
    assert len(mine) == 2 * len(s["recipes"]) * len(s["pretrain_seeds"])
    assert {u.name for u in mine if u.method == "vicreg"} == set(s["recipes"])
    assert [u.tag for u in mine][:1] == ["recipe-method"]


@pytest.mark.parametrize("recipes, message", [
    ({"Bad Name": {}}, "recipe name 'Bad Name' must be lower-case letters, digits"),
    ({"a": {"lr": 0.1}}, "[recipes.a]: unknown knob(s) 'lr': a continued recipe's knobs are those of every method"),
    ({"a": {"encoder_bn": "half"}}, "[recipes.a]: encoder_bn must be one of train, frozen, got 'half'"),
    ({"a": {"encoder_lr_scale": -1}}, "[recipes.a]: encoder_lr_scale multiplies the encoder's learning rate"),
    ({"a": {"head_warmup_steps": 1.5}}, "[recipes.a]: head_warmup_steps must be an integer >= 0, got 1.5"),
    # A preset's recipes join the file's; a knob given at its default is the same recipe as leaving it out.
    ({"b": {"encoder_lr_scale": 0.3}, "c": {"encoder_lr_scale": 0.3, "encoder_bn": "train"}},
     "recipes 'b' and 'c' are the same recipe"),
    ({"a": {"encoder_lr_scale": 1.0}}, "recipes 'method' and 'a' are the same recipe"),
])
def test_a_bad_recipe_is_named_with_what_is_wrong(recipes, message):
    with pytest.raises(UserError) as err:
        load_protocol("continued_recipe", {"recipes": recipes})
    assert message in str(err.value)


# ---------------------------------------------------------------- records


def test_a_recipe_run_is_keyed_by_its_knobs_and_validates(tmp_path):
    hashes = _protocols(tmp_path / "protocols")
    record = recipe_record("simclr", "gentle", 0, hashes)
    _write(tmp_path / "results", record)
    assert validate_paths([tmp_path / "results"], known_protocol_hashes(tmp_path / "protocols"))[0] == []
    ev = job_key({"name": "linear_probe", "hash": hashes["linear_probe"]}, "x", "y", {}, {}, 0.1, 0, 0)
    assert continued_recipe_key("h", {"encoder_lr_scale": 0.1}, ev) != continued_recipe_key("h", {}, ev)
    # The key follows the recorded knobs, not the recipe's name: a renamed recipe keeps its runs.
    renamed = json.loads(json.dumps(record))
    renamed["ablation"]["recipe_name"] = "renamed"
    assert record_key(renamed) == record_key(record)
    other = json.loads(json.dumps(record))
    other["ablation"]["recipe"]["encoder_lr_scale"] = 0.5
    assert record_key(other) != record_key(record)


def test_a_recipe_run_must_record_the_recipe_its_checkpoint_ran_with(tmp_path):
    hashes = _protocols(tmp_path / "protocols")
    good = recipe_record("simclr", "gentle", 0, hashes)
    assert check_ablation(good) == []
    wrong = json.loads(json.dumps(good))
    wrong["init"]["pretrain"]["continued"]["recipe"]["encoder_bn"] = "frozen"
    assert check_ablation(wrong)[0][0] == "ablation.recipe"
    budget = json.loads(json.dumps(good))
    budget["ablation"]["axis"] = "steps"
    assert check_ablation(budget) == [("ablation.axis", "a continued_recipe run varies 'recipe', got 'steps'")]
    assert record_parts(good)[1:5] == ["simclr@imagenet", "continued_recipe", "recipe-gentle", "linear_probe"]


# ---------------------------------------------------------------- the choice


def _names(choice) -> dict[str, str]:
    return {m: r.name for m, r in choice.chosen.items()}


def test_each_method_gets_the_recipe_of_its_best_validation_score(board):
    runs = _runs(board[0])
    choice = continued_recipe.choose(runs)
    # simclr's best is gentle (0.705), vicreg's gentle-frozen (0.665); one recipe for both (the best mean,
    # gentle-frozen at 0.635) would have given simclr a recipe 0.1 worse on its own validation split.
    assert _names(choice) == {"simclr": "gentle", "vicreg": "gentle-frozen"}
    assert choice.complete and choice.methods == ["simclr", "vicreg"]
    assert math.isclose(choice.chosen["simclr"].val["simclr"], 0.705)
    assert choice.chosen["vicreg"].knobs == {**DEFAULTS, "encoder_lr_scale": 0.1, "encoder_bn": "frozen"}
    # The mean over the methods is still computed for the table.
    assert math.isclose(choice.recipes[2].mean_val, (0.605 + 0.665) / 2)


def test_the_choice_never_reads_the_test_split(board):
    runs = _runs(board[0])
    chosen = _names(continued_recipe.choose(runs))
    # Any test scores (here: reversed, then none at all) leave the choice as it was.
    flipped = runs.assign(macro_f1=1 - runs["macro_f1"], accuracy=0.0, balanced_accuracy=0.0)
    assert _names(continued_recipe.choose(flipped)) == chosen
    blind = runs.drop(columns=["macro_f1", "accuracy", "balanced_accuracy", "per_class_f1", "confusion_matrix"])
    assert _names(continued_recipe.choose(blind)) == chosen
    # ...while the validation scores decide it, method by method.
    boosted = runs.assign(val_macro_f1=np.where((runs["recipe_name"] == "method") & (runs["init"] == "vicreg@imagenet"),
                                                0.99, runs["val_macro_f1"]))
    assert _names(continued_recipe.choose(boosted)) == {"simclr": "gentle", "vicreg": "method"}


def test_a_tie_goes_to_the_recipe_listed_first_and_a_method_missing_a_recipe_is_provisional(board):
    runs = _runs(board[0])
    tied = runs.assign(val_macro_f1=0.5)
    assert _names(continued_recipe.choose(tied)) == {"simclr": "method", "vicreg": "method"}
    partial = runs[~((runs["init"] == "vicreg@imagenet") & (runs["recipe_name"] == "gentle-frozen"))]
    choice = continued_recipe.choose(partial)
    assert choice.missing == {"vicreg": ["gentle-frozen"]} and choice.methods == ["simclr"]
    assert _names(choice) == {"simclr": "gentle", "vicreg": "gentle"}  # vicreg: the best of the recipes it has
    assert "vicreg" in choice.recipes[0].val  # its scores are still shown


def test_the_section_shows_every_recipe_the_choice_and_whether_the_rows_ran_with_it(board):
    root, hashes = board
    page = render.Page(load_results(root / "results"), known_protocol_hashes(root / "protocols"), "results")
    text = "\n".join(render.continued_recipe_section(page))
    assert "## Continued pretraining: the recipe, chosen on validation" in text
    assert "3 recipes tried, the same ones for every method" in text
    squeezed = " ".join(text.split())
    assert "| `gentle` | encoder_bn=train, encoder_lr_scale=0.1, head_warmup_steps=0 | 70.5 ✓ | 55.5 |" in squeezed
    assert "| `gentle-frozen` | encoder_bn=frozen, encoder_lr_scale=0.1, head_warmup_steps=0 | 60.5 | 66.5 ✓ |" in squeezed
    assert "Chosen, per method: `simclr` `gentle` (70.5); `vicreg` `gentle-frozen` (66.5)." in text
    assert "No continued row of the main grid yet." in text
    # A main-grid continued row that ran with another recipe than its method's is flagged (simclr's is gentle).
    row = recipe_record("simclr", "gentle-frozen", 0, hashes, val=0.5, test=0.5)
    main = continued(make_result("simclr", "linear_probe", FRACTION, 0, hashes, np.random.default_rng(0)))
    main["init"]["pretrain"] = {"steps": 150, "seed": 0, "init": "imagenet",
                                "continued": row["init"]["pretrain"]["continued"]}
    _write(root / "results", main)
    page = render.Page(load_results(root / "results"), known_protocol_hashes(root / "protocols"), "results")
    text = "\n".join(render.continued_recipe_section(page))
    assert ("**Continued rows that ran with another recipe**: `simclr` (encoder_bn=frozen, encoder_lr_scale=0.1, "
            "head_warmup_steps=0)") in text
    # Beside the recipes, the baselines' validation score of the same protocol and labels, from the main grid.
    imagenet = make_result("imagenet", "linear_probe", FRACTION, 0, hashes, np.random.default_rng(0))
    other_fraction = make_result("imagenet", "linear_probe", 0.01, 0, hashes, np.random.default_rng(1))
    _write(root / "results", imagenet)
    _write(root / "results", other_fraction)
    page = render.Page(load_results(root / "results"), known_protocol_hashes(root / "protocols"), "results")
    text = "\n".join(render.continued_recipe_section(page))
    assert (f"the baselines' validation macro-F1 in the track's main results (same protocol version and labels): "
            f"`imagenet` {100 * imagenet['metrics']['val']['macro_f1']:.1f}.") in text
    # The main table's continued rows say which recipe they ran with and how many were tried for them.
    board = render.render(page.results, known_protocol_hashes(root / "protocols"), "results")
    assert ("Their recipe: encoder_bn=frozen, encoder_lr_scale=0.1, head_warmup_steps=0. 3 recipes were tried for "
            "every continued row of this track and one chosen for each method on the validation split") in board
    # With the recipe its validation score chose, the row is not flagged.
    main["init"]["pretrain"]["continued"] = recipe_record("simclr", "gentle", 0, hashes)["init"]["pretrain"]["continued"]
    _write(root / "results", main)
    page = render.Page(load_results(root / "results"), known_protocol_hashes(root / "protocols"), "results")
    assert "The track's continued rows (`simclr`) ran with theirs." in "\n".join(render.continued_recipe_section(page))


def test_without_recipe_runs_there_is_no_section(tmp_path):
    hashes = write_protocols(tmp_path / "protocols")
    _write(tmp_path / "results", make_result("simclr", "linear_probe", FRACTION, 0, hashes, np.random.default_rng(0)))
    page = render.Page(load_results(tmp_path / "results"), hashes, "results")
    assert render.continued_recipe_section(page) == []


def test_methods_m_shows_the_preset_s_recipe_and_how_one_is_chosen(capsys):
    from benchmark.cli import main

    assert main(["methods", "vicreg", "--preset", "cpu"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| encoder_bn"))
    assert "| frozen " in row  # the cpu preset's column: its chosen recipe
    assert "Preset cpu sets the column above for vicreg" in out
    assert "`sslbench ablation continued-recipe --preset cpu`" in out and "(never the test split)" in out
    assert main(["methods", "simclr", "--preset", "cpu"]) == 0  # its own recipe: BatchNorm trained
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| encoder_bn"))
    assert [c.strip() for c in row.split("|")[1:4]] == ["encoder_bn", "train", "train"]
    assert main(["methods", "vicreg", "--preset", "cpu-v3"]) == 0
    assert "Preset cpu-v3 sets no continued recipe" in capsys.readouterr().out


def test_methods_m_with_a_preset_shows_what_the_preset_sets_for_the_method_s_runs(capsys):
    import json

    from benchmark.cli import main

    assert main(["methods", "barlowtwins", "--preset", "cpu-v3"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
            for line in out.splitlines() if line.startswith("| ") and "|" in line[2:]}
    assert rows["proj_output_dim"] == ["2048", "256"] and rows["batch_size"] == ["256", "64"]
    assert rows["lr"] == ["0.3", "0.3"]
    assert "Preset cpu-v3 sets batch_size=64, proj_hidden_dim=256, proj_output_dim=256 for its barlowtwins runs" in out
    assert main(["methods", "barlowtwins", "--preset", "cpu-v3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["preset_hparams"]["proj_hidden_dim"] == 256
    assert main(["methods", "simclr", "--preset", "standard"]) == 0
    assert "Preset standard runs simclr with its defaults." in capsys.readouterr().out
