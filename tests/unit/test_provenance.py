"""What a result records about where it came from, and where files go by default: the provenance
block, the default results/runs/cache folders and their environment overrides, the protocol record."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from benchmark import folders, provenance
from benchmark.data.cache import default_cache_dir
from leaderboard.results import default_results_dir
from protocols.spec import load_protocol

REPO = Path(__file__).resolve().parents[2]


def test_default_folders_and_their_environment_overrides(monkeypatch, tmp_path):
    for name in ("SSLBENCH_RESULTS_DIR", "SSLBENCH_RUNS_DIR", "SSLBENCH_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_results_dir() == REPO / "leaderboard" / "results"
    assert folders.default_runs_dir() == REPO / "runs"
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "sslbench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sslbench"
    monkeypatch.setenv("SSLBENCH_RESULTS_DIR", "~/r")
    monkeypatch.setenv("SSLBENCH_RUNS_DIR", "~/runs")
    monkeypatch.setenv("SSLBENCH_CACHE_DIR", "~/c")
    assert default_results_dir() == tmp_path / "home" / "r"
    assert folders.default_runs_dir() == tmp_path / "home" / "runs"
    assert default_cache_dir() == tmp_path / "home" / "c"


def test_provenance_records_the_commit_data_packages_device_time_and_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/sslbench", "bench", "--method", "vicreg", "--dataset", "a b"])
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    prov = provenance.provenance(dataset_fingerprints={"downstream": "d" * 64, "pretrain": "p" * 64},
                              device="CPU: test (2 cores)", gpu=False, wall_time_s=12.34567)
    after = dt.datetime.now(dt.UTC)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert prov["git_sha"] == sha and isinstance(prov["git_dirty"], bool)
    assert prov["dataset_fingerprints"] == {"downstream": "d" * 64, "pretrain": "p" * 64}
    assert prov["device"] == "CPU: test (2 cores)" and prov["gpu"] is False
    assert prov["wall_time_s"] == 12.346
    assert before <= dt.datetime.fromisoformat(prov["date"]) <= after
    assert prov["command"] == "sslbench bench --method vicreg --dataset 'a b'"
    assert prov["packages"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert prov["packages"]["torch"] == metadata.version("torch")
    assert set(prov["packages"]) == {"python", *provenance.PROVENANCE_PACKAGES}
    assert prov["sslbench_version"] == metadata.version("sslbench")
    assert provenance.provenance(dataset_fingerprints={}, device="x", gpu=True, wall_time_s=1,
                              command="given")["command"] == "given"


def test_a_package_that_is_not_installed_is_recorded_as_such(monkeypatch):
    monkeypatch.setattr(provenance, "PROVENANCE_PACKAGES", ("torch", "no-such-package-here"))
    provenance.package_versions.cache_clear()
    try:
        assert provenance.package_versions()["no-such-package-here"] == "not installed"
    finally:
        provenance.package_versions.cache_clear()


def test_an_uninstalled_sslbench_reports_an_unknown_version(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert provenance.sslbench_version() == "unknown"


def test_outside_a_git_checkout_the_commit_is_unknown_and_dirty(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    provenance.git_state.cache_clear()
    try:
        assert provenance.git_state() == ("unknown", True)
    finally:
        provenance.git_state.cache_clear()


def test_commands_that_write_results_stop_before_any_work_outside_a_git_checkout(monkeypatch, tmp_path, capsys):
    """`sslbench validate` refuses a result without a commit, so a copy of the code without its .git
    (a tree copied to an offline GPU machine) must not pretrain for hours first: bench/evaluate/run
    stop at once, naming the fix; reading commands (export, data cards) still run."""
    from benchmark.cli import main
    from benchmark.errors import UserError
    from benchmark.track import track_context
    from tests.e2e.test_bench_cli import TINY

    provenance.require_git_checkout()  # this checkout is one
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    provenance.git_state.cache_clear()
    try:
        with pytest.raises(UserError) as err:
            provenance.require_git_checkout()
        assert str(err.value) == (
            f"{tmp_path} is not a git checkout (no .git folder above it): its results would record the commit as "
            "'unknown', and `sslbench validate` and the leaderboard refuse them. Run from a clone of the repository "
            "(`git clone --depth 1` is enough), or copy the checkout together with its .git folder")
        with monkeypatch.context() as m, pytest.raises(UserError, match=r"is not a git checkout \(git is not installed\): "):
            m.setattr(provenance.shutil, "which", lambda name: None if name == "git" else "/bin/" + name)
            provenance.require_git_checkout()
        dirs = ["--preset", str(TINY), "--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
                "--cache-dir", str(tmp_path / "cache")]
        for command in (["bench", "--method", "simclr"], ["evaluate", "--init", "random"], ["run"]):
            assert main([*command, *dirs]) == 2, command
            assert ".git" in capsys.readouterr().err
        assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # nothing was started
        ctx = track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                            cache_dir=str(tmp_path / "cache"), new_results=False)
        assert ctx.track.preset == "tiny"
    finally:
        provenance.git_state.cache_clear()


def test_only_a_change_of_the_code_makes_the_commit_dirty_not_results_or_the_page(monkeypatch, tmp_path):
    """A track rerun writes its results and page into the checkout; the results made after the first
    write still come from the committed code."""
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    files = {"benchmark/engine.py": "x = 1\n", "leaderboard/results/t/a.json": "{}\n",
             "leaderboard/LEADERBOARD.md": "# page\n", "leaderboard/figures/f.png": "png",
             "leaderboard/site/index.html": "<html>", "leaderboard/render.py": "y = 1\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)

    def dirty() -> bool:
        provenance.git_state.cache_clear()
        return provenance.git_state()[1]

    try:
        assert not dirty()
        for name in files:
            if name.startswith("leaderboard/") and name != "leaderboard/render.py":
                (tmp_path / name).write_text("changed by a run")
        (tmp_path / "leaderboard/results/t/a.json").unlink()
        assert not dirty()
        (tmp_path / "leaderboard/render.py").write_text("y = 2\n")  # code beside the results
        assert dirty()
        git("checkout", "--", "leaderboard/render.py")
        (tmp_path / "benchmark/engine.py").write_text("x = 2\n")
        assert dirty()
    finally:
        provenance.git_state.cache_clear()


def test_the_protocol_record_names_its_file_version_and_hash():
    spec = load_protocol("linear_probe", {"probe": {"max_iter": 5}})
    assert spec.record() == {"name": "linear_probe", "version": spec.version, "hash": spec.hash}
    assert spec.key == {"name": "linear_probe", "hash": spec.hash, "overrides": {"probe": {"max_iter": 5}}}


def test_distributed_gathering_reaches_every_loss_of_a_method():
    from benchmark.backbones import build_backbone
    from methods.registry import get_method

    method = get_method("moco")(build_backbone("resnet18"), proj_hidden_dim=8, proj_output_dim=8, queue_size=8)
    holders = [m for m in method.modules() if hasattr(m, "gather_distributed")]
    assert holders and not any(m.gather_distributed for m in holders)
    method.set_gather_distributed(True)
    assert all(m.gather_distributed is True for m in holders)
    method.set_gather_distributed(False)
    assert not any(m.gather_distributed for m in holders)


def test_a_method_without_a_loss_says_so():
    from methods.base import SSLMethod

    class NoLoss(SSLMethod):
        family = "information"
        defaults = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0, "warmup": 0.0, "batch_size": 2}

    with pytest.raises(NotImplementedError, match="NoLoss must implement loss"):
        NoLoss(encoder=None).loss([])


@pytest.mark.parametrize("argv, recorded", [
    (["/work/x/benchmark/__main__.py", "bench", "--method", "vicreg", "--preset", "cpu", "--results-dir",
      "/work/scratch/v2/results", "--runs-dir=/work/scratch/v2/runs", "--cache-dir", "/home/me/.cache/s"],
     "sslbench bench --method vicreg --preset cpu --results-dir RESULTS_DIR --runs-dir=RUNS_DIR --cache-dir CACHE_DIR"),
    (["sslbench", "bench", "--method", "barlowtwins", "--dataset", "videos:/data/fetal clips/", "--downstream",
      "fetal_planes_db:/mnt/FPDB", "-o", "subjects=3"],
     "sslbench bench --method barlowtwins --dataset 'videos:.../fetal clips' --downstream fetal_planes_db:.../FPDB "
     "-o subjects=3"),
    (["sslbench", "run", "--checkpoint", f"mine={REPO}/runs/pretrain/x/encoder.safetensors", "--out", "/tmp/o"],
     "sslbench run --checkpoint mine=runs/pretrain/x/encoder.safetensors --out OUT_DIR"),
    (["sslbench", "evaluate", "--checkpoint", "/", "--results-dir"], "sslbench evaluate --checkpoint ... --results-dir"),
])
def test_the_recorded_command_names_folders_by_their_role_not_their_place(argv, recorded):
    assert provenance.portable_command(argv) == recorded
    assert "/work" not in recorded and "/home" not in recorded and "/data" not in recorded


def test_the_machine_record_names_what_makes_floating_point_differ(monkeypatch):
    import torch

    from benchmark.device import machine_record
    from leaderboard.results import machine_text

    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    record = machine_record("cpu")
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["threads"] == torch.get_num_threads() and record["blas"].split()[0] in ("mkl", "open", "openblas",
                                                                                          "accelerate", "unknown")
    assert record["env"]["MKL_ENABLE_INSTRUCTIONS"] == "SSE4_2" and "ATEN_CPU_CAPABILITY" not in record["env"]
    assert record["cpu_model"] and record["cpu_vendor"] and "gpu" not in record
    kind = machine_text({"machine": record, "device": "ignored"})
    assert kind.startswith(f"{record['cpu_model']}, {record['cpu_capability']}, {record['blas']}") and \
        kind.endswith("MKL_ENABLE_INSTRUCTIONS=SSE4_2")
    assert machine_text({"device": "CPU: AMD EPYC (2 cores)", "threads": 2}) == \
        "CPU: AMD EPYC (2 cores), 2 threads (instruction set and BLAS not recorded)"
