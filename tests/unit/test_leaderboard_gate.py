"""`sslbench leaderboard --check` (the CI gate) is exactly as strict as `sslbench validate`: a made-up
protocol hash fails both, an earlier protocol version passes both only when its hash is listed in
protocols/retired/hashes.toml, and both report the same problems."""
from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.errors import DataError
from protocols.spec import RETIRED_FILE, retired_protocol_hashes
from tests.unit.test_leaderboard import (
    PROTOCOL_TOML,
    TRACK,
    canonical_sha256,
    generate,
    make_fixture,
    make_result,
    write_result,
)


def _gate(capsys, results, protocols, out) -> tuple[int, list[str], int, list[str]]:
    """(validate's exit code, its problem lines, --check's exit code, its problem lines)."""
    capsys.readouterr()
    v = main(["validate", str(results), "--protocols", str(protocols)])
    v_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(results))]
    c = main(["leaderboard", "--results", str(results), "--out", str(out), "--protocols", str(protocols), "--check"])
    c_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(str(results))]
    return v, v_lines, c, c_lines


@pytest.fixture
def board(tmp_path):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01, 1.0))
    return results, protocols, tmp_path / "LEADERBOARD.md"


def _retire(protocols, name: str, version: int, digest: str) -> None:
    (protocols / RETIRED_FILE).parent.mkdir(parents=True, exist_ok=True)
    with open(protocols / RETIRED_FILE, "a") as f:
        f.write(f'[[{name}]]\nversion = {version}\nhash = "{digest}"\nretired = "test"\n')


def test_a_made_up_protocol_hash_fails_the_gate_as_it_fails_validate(board, capsys):
    results, protocols, out = board
    path = results / TRACK["id"] / "vicreg" / "linear_probe" / "1pct" / "pretrain-seed0" / "seed2.json"
    result = json.loads(path.read_text())
    result["protocol"]["hash"] = "ab" * 32
    path.write_text(json.dumps(result))
    generate(results, protocols, out)  # the leaderboard regenerated with the forged result in it
    v, v_lines, c, c_lines = _gate(capsys, results, protocols, out)
    assert (v, c) == (1, 1)
    assert v_lines == c_lines == [f"{path}: protocol.hash: abababababab… is not the hash of the current "
                                  f"protocols/linear_probe.toml ({_current(protocols)[:12]}…) "
                                  "nor of an earlier version listed in protocols/retired/hashes.toml; "
                                  "rerun with the current protocol"]


def _current(protocols) -> str:
    return canonical_sha256(tomllib.loads((protocols / "linear_probe.toml").read_text()))


def test_an_earlier_protocol_version_passes_only_when_its_hash_is_listed(board, capsys):
    results, protocols, out = board
    old = _current(protocols)
    # The protocol changes to version 2; imagenet is rerun under it at 1 %, the rest keep version 1.
    (protocols / "linear_probe.toml").write_text(PROTOCOL_TOML["linear_probe"].replace("version = 1", "version = 2"))
    rng = np.random.default_rng(3)
    for s in range(3):
        result = make_result("imagenet", "linear_probe", 0.01, s, {"linear_probe": _current(protocols)}, rng)
        result["protocol"]["version"] = 2
        write_result(results, result)  # replaces the version-1 result of that job
    generate(results, protocols, out)
    v, v_lines, c, c_lines = _gate(capsys, results, protocols, out)
    assert (v, c) == (1, 1) and v_lines == c_lines
    # Every version-1 linear-probe file is refused by both, and so is the ablation run that evaluated with
    # version 1 (its own protocol is current); nothing else.
    ablation = [p for p in results.rglob("*.json") if "variance_vs_size" in p.parts]
    assert len(ablation) == 1 and len(v_lines) == len(list(results.rglob("*.json"))) - 3
    assert [line for line in v_lines if ": protocol.hash: " not in line] == \
        [line for line in v_lines if line.startswith(f"{ablation[0]}: ablation.eval_protocol_hash: ")]

    _retire(protocols, "linear_probe", 1, old)
    v, v_lines, c, c_lines = _gate(capsys, results, protocols, out)
    assert not [line for line in v_lines if ": protocol." in line] and v_lines == c_lines
    assert "(v1, hash" in out.read_text() and "earlier version" in out.read_text()


def test_a_retired_hash_under_another_version_number_is_refused(board, capsys):
    results, protocols, out = board
    old = _current(protocols)
    (protocols / "linear_probe.toml").write_text(PROTOCOL_TOML["linear_probe"].replace("version = 1", "version = 2"))
    _retire(protocols, "linear_probe", 7, old)
    generate(results, protocols, out)
    v, v_lines, c, c_lines = _gate(capsys, results, protocols, out)
    assert (v, c) == (1, 1) and v_lines == c_lines
    assert v_lines and all(line.endswith(f"protocol.version: 1 but protocols/retired/hashes.toml lists hash "
                                         f"{old[:12]}… as version 7") for line in v_lines)


def test_check_reports_exactly_what_validate_reports(board, capsys):
    results, protocols, out = board
    # The probe runs once per pretraining seed at 100 %: one file of each is broken a different way.
    broken = {"pretrain-seed0": ("metrics", "test", "accuracy"), "pretrain-seed1": ("provenance", "git_sha"),
              "pretrain-seed2": ("protocol", "hash")}
    for run, keys in broken.items():
        path = results / TRACK["id"] / "random" / "linear_probe" / "100pct" / run / "seed0.json"
        result = json.loads(path.read_text())
        leaf = result
        for k in keys[:-1]:
            leaf = leaf[k]
        leaf[keys[-1]] = {"accuracy": 0.01, "git_sha": "not a sha", "hash": "cd" * 32}[keys[-1]]
        path.write_text(json.dumps(result))
    generate(results, protocols, out)
    v, v_lines, c, c_lines = _gate(capsys, results, protocols, out)
    assert (v, c) == (1, 1)
    assert len(v_lines) == 3 and v_lines == c_lines


def test_the_retired_registry_of_this_repository_parses_and_a_bad_entry_is_named(tmp_path):
    assert all(len(h) == 64 for versions in retired_protocol_hashes().values() for h in versions)
    (tmp_path / RETIRED_FILE).parent.mkdir(parents=True)
    path = tmp_path / RETIRED_FILE
    path.write_text('[[finetune]]\nversion = 1\nhash = "abc"\n')
    with pytest.raises(DataError) as info:
        retired_protocol_hashes(tmp_path)
    assert str(info.value) == f"{path}: [[finetune]] entry 1 needs version = <int> and hash = <64 hex digits>"
    path.write_text("[[finetune]\n")
    with pytest.raises(DataError) as info:
        retired_protocol_hashes(tmp_path)
    assert str(info.value).startswith(f"{path}: not valid TOML (")
    # One retired version may be written as a plain table rather than an array of tables.
    path.write_text(f'[finetune]\nversion = 2\nhash = "{"a" * 64}"\n')
    assert retired_protocol_hashes(tmp_path) == {"finetune": {"a" * 64: 2}}


def test_an_ablation_run_must_have_run_the_current_or_a_retired_evaluation_protocol():
    from leaderboard.validate import check_eval_protocol

    known = {"finetune": "c" * 64, "linear_probe": "d" * 64}
    assert check_eval_protocol({"ablation": {"eval_protocol": "finetune", "eval_protocol_hash": "c" * 64}}, known) == []
    stale = {"scanner": {"eval_protocol": "finetune", "eval_protocol_hash": "ab" * 32}}
    assert check_eval_protocol(stale, known) == [(
        "scanner.eval_protocol_hash",
        "abababababab… is not the hash of the current protocols/finetune.toml (cccccccccccc…) nor of an earlier "
        "version listed in protocols/retired/hashes.toml; rerun the ablation with the current finetune protocol")]
    assert check_eval_protocol({"ablation": stale["scanner"]}, known)[0][0] == "ablation.eval_protocol_hash"
    assert check_eval_protocol(stale, known, {"finetune": {"ab" * 32: 2}}) == []  # a listed earlier version
    assert check_eval_protocol({"job": {}}, known) == []  # a main-protocol run
