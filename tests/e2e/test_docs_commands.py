"""Every command of README.md, CONTRIBUTING.md and benchmark/data/sources/FORMATS.md (doc_commands.py finds
them in the fenced blocks), run at tiny size, so no documented command drifts from the CLI.

What each command gets, by program:
- `sslbench …`: run for real in this process (`benchmark.cli.main`, which spares a torch import per
  command), with every data path replaced by a tiny folder or file of the same format (TinyData),
  `--preset` by the tiny test preset, `--out` and `--checkpoint` by files under tmp, and the cache, runs and
  results folders moved to tmp ($SSLBENCH_*_DIR), so nothing in the repository changes — except the
  subcommands of PARSE_ONLY: a tiny run of those is already an e2e test (named there), so here the CLI's own
  parser reads them (an option it does not have fails) and their preset is loaded.
- `make TARGET VAR=…`: `make -n` shows the target exists and what it runs; each `sslbench` line of it is
  handled as above (`make bench …` → `sslbench bench …`: parsed), the rest must be a known tool.
  `make test` is the suite this test is part of: its recipe is checked and its `sslbench` line parsed.
- `python -m pytest ARGS`: collected in this process (`--collect-only`): the paths exist and the
  selection is not empty; running the tests is the suite's own job.
- `git add PATHS`: every path exists and git does not ignore it; `git commit -m MSG`: parsed. Nothing is
  added or committed.
Any other program fails: give it a runner here, or fence its block ```text if it is not a command.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import build_parser, main
from tests.e2e.doc_commands import (
    DOCS,
    REPO,
    DocCommand,
    UnmarkedBlock,
    all_doc_commands,
    block_commands,
    doc_commands,
    fenced_blocks,
)
from tests.e2e.test_bench_cli import TINY

try:
    COMMANDS = all_doc_commands()
except ValueError:  # an unmarked or unclosed block: test_every_doc_has_commands_and_every_block_is_marked says where
    COMMANDS = []

# sslbench subcommands whose tiny run is an e2e test elsewhere; here they are parsed only.
PARSE_ONLY = {
    "bench": "tests/e2e/test_bench_cli.py (the tiny track, vicreg and both baselines) and "
             "tests/e2e/test_readme_real_data.py (README's real-data command on PyAV clips and FETAL_PLANES_DB)",
    "ablation": "tests/e2e/test_ablation_cli.py (variance-vs-size on the tiny track) and "
                "tests/e2e/test_learning_curve_cli.py (learning-curve on the tiny track) and "
                "tests/e2e/test_continued_recipe_cli.py (continued-recipe on the tiny track) and "
                "tests/e2e/test_positives_cli.py (positives on the tiny track)",
}
# sslbench subcommand actions parsed only, likewise: `data download` fetches from the internet, and its tiny
# run (a miniature catalogue served on 127.0.0.1) is tests/unit/test_download.py.
PARSE_ONLY_ACTIONS = {("data", "download"): "tests/unit/test_download.py"}
# Programs a make recipe may run besides sslbench: the venv set-up and `make lint`.
MAKE_TOOLS = ("test", "python3", ".venv/bin/python", "touch", ".venv/bin/ruff", ".venv/bin/lint-imports")
# Where the CLI writes by default inside the repository; a real run must leave them as they were.
REPO_OUTPUTS = ("runs", "leaderboard/results", "leaderboard/LEADERBOARD.md", "leaderboard/figures",
                "leaderboard/site", "export", "preview", "features.parquet")


# ---- tiny data in each documented format ---------------------------------------------------------

class TinyData:
    """A tiny folder or file of each source's documented layout, made once per session when a command
    first names that kind (the helpers are the unit tests' own writers of each format)."""

    def __init__(self, root: Path, folders: dict[str, Path]):
        self.root, self.folders = root, folders
        self._made: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self._made:
            self._made[name] = getattr(self, f"_{name}")(self.root / name)
        return self._made[name]

    @staticmethod
    def _videos(root: Path) -> Path:
        from tests.unit.test_sources_videos import encode_clip

        # Files named P<n>_…, as FORMATS' --subject-pattern '^(P\d+)_' expects (an unmatched file stops the build).
        for k, name in enumerate(["P01_a.mp4", "P01_b.mp4", "P02_a.mp4", "P03_a.mp4"]):
            encode_clip(root / name, n_frames=10, seed=k)
        return root

    @staticmethod
    def _dicom(root: Path) -> Path:
        from tests.unit.test_sources_dicom import pixels, write_dicom

        for p in range(5):  # a cine and a still per patient
            write_dicom(root / f"site{p % 2}" / f"cine{p}.dcm", pixels(10, p), f"P{p}")
            write_dicom(root / f"site{p % 2}" / f"still{p}.dcm", pixels(1, 10 + p), f"P{p}")
        return root

    def _dicom_labels(self, path: Path) -> Path:
        from tests.unit.test_sources_dicom import write_manifest

        dicom = self.get("dicom")
        rows = [{"path": str(f.relative_to(dicom)), "label": ("4CH", "3VV")[k % 2]}
                for k, f in enumerate(sorted(dicom.rglob("still*.dcm")))]
        return write_manifest(path.with_suffix(".csv"), rows)

    @staticmethod
    def _hdf5(root: Path) -> Path:
        import h5py

        from tests.unit.test_sources_hdf5 import video

        root.mkdir(parents=True)
        with h5py.File(root / "videos.h5", "w") as f:
            for p in range(3):
                f[f"patient{p}/clip"] = video(10, p)
        return root / "videos.h5"

    @staticmethod
    def _echonet(root: Path) -> Path:
        from tests.unit.test_sources_videos import make_echonet

        root.mkdir(parents=True)
        return make_echonet(root)

    @staticmethod
    def _fetal_planes_db(root: Path) -> Path:
        from tests.unit.test_sources_images import make_fetal_planes_db

        return make_fetal_planes_db(root, patients=6)

    @staticmethod
    def _african_fetal_planes(root: Path) -> Path:
        from tests.unit.test_sources_african import make_african_fetal_planes

        return make_african_fetal_planes(root)

    @staticmethod
    def _imagefolder(root: Path) -> Path:
        from tests.unit.test_sources_images import write_image

        for k in range(12):
            write_image(root / ("4CH", "LVOT")[k % 2] / f"subj{k // 2}" / "img.png", 20 * k)
        return root

    @staticmethod
    def _csv(root: Path) -> Path:
        from tests.unit.test_sources_images import write_image, write_rows

        rows = []
        for k in range(12):
            write_image(root / "scans" / f"p{k // 2}_{k}.png", 20 * k)
            rows.append([f"scans/p{k // 2}_{k}.png", ("4CH", "3VT")[k % 2], f"p{k // 2}", ""])
        return write_rows(root / "labels.csv", ["path", "label", "subject", "split"], rows)

    @staticmethod
    def _hf(root: Path) -> Path:
        import datasets
        from PIL import Image

        planes = ["4CH", "LVOT", "RVOT"]
        ds = datasets.Dataset.from_dict(
            {"image": [Image.fromarray(np.full((16, 16), 20 * k, np.uint8)) for k in range(12)],
             "plane": [planes[k % 3] for k in range(12)], "patient_id": [f"p{k // 2}" for k in range(12)]},
            features=datasets.Features({"image": datasets.Image(), "plane": datasets.Value("string"),
                                        "patient_id": datasets.Value("string")}))
        ds.save_to_disk(str(root))
        return root

    def checkpoint(self, method: str = "vicreg") -> Path:
        """An encoder where `sslbench bench --method METHOD --preset TINY` puts its first checkpoint, so
        `export --method METHOD` finds it; random weights: pretraining is tested elsewhere, the commands here."""
        if method not in self._made:
            self._made[method] = self._save_checkpoint(method)
        return self._made[method]

    def _save_checkpoint(self, method: str) -> Path:
        from benchmark import track
        from benchmark.backbones import build_backbone
        from benchmark.checkpoint import save_encoder
        from tests.unit.test_export import META

        ctx = track.track_context(str(TINY), runs_dir=self.folders["SSLBENCH_RUNS_DIR"],
                                  cache_dir=str(self.folders["SSLBENCH_CACHE_DIR"]))
        final = track.pretrain_run(ctx, method, ctx.pretrain_cache(), 0)[2]
        final.parent.mkdir(parents=True, exist_ok=True)
        save_encoder(final, build_backbone(ctx.preset["backbone"], init="random"),
                     {**META, "method": method, "resolution": ctx.preset["resolution"]})
        return final


@pytest.fixture(scope="session")
def sslbench_dirs(tmp_path_factory):
    """The cache, runs and results folders of every run here: outside the repository, shared."""
    root = tmp_path_factory.mktemp("doc-folders")
    return {"SSLBENCH_CACHE_DIR": root / "cache", "SSLBENCH_RUNS_DIR": root / "runs",
            "SSLBENCH_RESULTS_DIR": root / "results"}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, sslbench_dirs):
    return TinyData(tmp_path_factory.mktemp("doc-data"), sslbench_dirs)


@pytest.fixture
def docs_env(monkeypatch, sslbench_dirs, one_thread):
    for name, folder in sslbench_dirs.items():
        monkeypatch.setenv(name, str(folder))
    return sslbench_dirs


# ---- substitution -------------------------------------------------------------------------------

def is_hub_id(kind: str, path: str) -> bool:
    return kind == "hf" and not path.startswith(("/", ".", "~"))


def substitute(argv: list[str], data: TinyData, out: Path) -> list[str]:
    """The command at tiny size: data paths → tiny data of the same kind, --preset → the tiny preset,
    --out → under `out`, --checkpoint → a tiny checkpoint (and export --method finds one), repository
    paths → absolute."""
    from benchmark.data.spec import known_sources

    kinds = set(known_sources())
    done = []
    for i, arg in enumerate(argv):
        flag = argv[i - 1] if i else ""
        kind, sep, path = arg.partition(":")
        if flag == "--preset":
            arg = str(TINY)
        elif flag == "--out":
            arg = str(out / arg)
        elif flag == "--checkpoint":
            arg = str(data.checkpoint())
        elif flag == "--method" and argv[1] == "export":
            data.checkpoint(arg)  # the one `sslbench bench` would have made
        elif flag == "--labels":
            arg = str(data.get("dicom_labels"))
        elif sep and kind in kinds and not is_hub_id(kind, path):
            arg = f"{kind}:{data.get(kind)}"
        elif i > 1 and not arg.startswith("-") and (REPO / arg).exists():  # not the subcommand: `leaderboard` is a folder too
            arg = str(REPO / arg)
        assert not arg.startswith("/data/") and "..." not in arg, \
            f"no tiny stand-in for {arg!r}: teach substitute() in {__file__} what it is"
        done.append(arg)
    return done


def parse(argv: list[str], what: str) -> argparse.Namespace:
    """The CLI's own parser on `argv` (after `sslbench`); an option it does not have fails, saying which."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        pass
    pytest.fail(f"{what}: the CLI's parser refuses it: {err.getvalue().strip().splitlines()[-1]}")


def check_preset(args: argparse.Namespace) -> None:
    from protocols.presets import load_preset

    if getattr(args, "preset", None) not in (None, "auto"):
        load_preset(args.preset)


def repo_outputs() -> dict[str, list]:
    state = {}
    for rel in REPO_OUTPUTS:
        path = REPO / rel
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.exists() else []
        state[rel] = [(str(f), f.stat().st_mtime_ns) for f in files]
    return state


# ---- runners, by program ---------------------------------------------------------------------------

def run_sslbench(command: DocCommand, argv: list[str], data: TinyData, out: Path, capsys, monkeypatch) -> None:
    args = parse(argv[1:], str(command))
    if argv[1] in PARSE_ONLY or tuple(argv[1:3]) in PARSE_ONLY_ACTIONS:
        check_preset(args)  # run at tiny size by PARSE_ONLY[argv[1]] (or PARSE_ONLY_ACTIONS)
        return
    hub = any(is_hub_id(*arg.split(":", 1)) for arg in argv if ":" in arg)
    if hub:
        no_hub(monkeypatch)
    before = repo_outputs()
    tiny = substitute(argv, data, out)
    code = main(tiny[1:])
    captured = capsys.readouterr()
    assert repo_outputs() == before, f"{command} wrote into the repository"
    if hub:  # FORMATS: offline, a hub id stops at once and says how to bring the data over
        assert code == 2 and "cannot reach the Hugging Face hub" in captured.err, captured.err[-2000:]
        assert "save_to_disk" in captured.err
        return
    assert code == 0, f"{command}\nran as: sslbench {' '.join(tiny[1:])}\n{captured.err[-3000:]}"
    if argv[1:3] == ["data", "prepare"]:
        spec = tiny[tiny.index("--dataset") + 1]
        assert f"source     {spec} (" in captured.out, captured.out
        frames = re.findall(r"^frames +([\d,]+) of", captured.out, re.M)
        assert frames and all(int(n.replace(",", "")) > 0 for n in frames), captured.out
        assert str(os.environ["SSLBENCH_CACHE_DIR"]) in captured.out
    if "--out" in tiny:
        assert Path(tiny[tiny.index("--out") + 1]).exists(), f"{command} wrote nothing to its --out"


def no_hub(monkeypatch) -> None:
    """No network, whatever the machine has: the hub's endpoint is a port nothing listens on."""
    import datasets
    import huggingface_hub.constants

    def refuse(*args, **kwargs):
        raise AssertionError("offline, load_dataset must not be tried (it retries for ~25 s)")

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(datasets, "load_dataset", refuse)


def make_recipe(argv: list[str]) -> list[list[str]]:
    """The commands `make ARGS` would run (make -n runs none of them), as argv lists."""
    # Not the settings of a `make test` this may run under: MAKEFLAGS carries its VAR=value overrides.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "-n", "-C", str(REPO), *argv[1:]], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 0, f"make -n {' '.join(argv[1:])}: {done.stderr}"
    return [_without_env_assignments(shlex.split(line)) for line in done.stdout.splitlines()
            if line.strip() and not line.startswith("make")]


def _without_env_assignments(argv: list[str]) -> list[str]:
    """A recipe line's program and arguments, without the `VAR=value` environment settings before them."""
    while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", argv[0]):
        argv = argv[1:]
    return argv


def run_make(command: DocCommand, argv: list[str], run_sslbench_line) -> None:
    lines = make_recipe(argv)
    sslbench = [line for line in lines if Path(line[0]).name == "sslbench"]
    for line in lines:
        assert Path(line[0]).name == "sslbench" or line[0] in MAKE_TOOLS, \
            f"{command}: its recipe runs {' '.join(line)}, which this test does not know"
    if argv[1] != "test":
        assert sslbench, f"{command}: the recipe runs no sslbench command: {lines}"
        for line in sslbench:
            run_sslbench_line(["sslbench", *line[1:]])
        return
    # `make test` is the suite this test belongs to: its recipe must still run pytest and then check the
    # committed page, which it does itself right after pytest; that line is only parsed here.
    assert any(line[1:3] == ["-m", "pytest"] for line in lines), f"{command}: no pytest in {lines}"
    assert any(line[1:3] == ["leaderboard", "--check"] for line in sslbench), f"{command}: {lines}"
    for line in sslbench:
        parse(line[1:], f"{command} → {' '.join(line)}")


def run_pytest(command: DocCommand, argv: list[str]) -> None:
    """`… -m pytest ARGS` collected in this process: the paths exist and the selection is not empty."""
    class Collected:
        ids: list[str] = []

        def pytest_collection_finish(self, session):
            Collected.ids = [item.nodeid for item in session.items]

    with contextlib.chdir(REPO):
        code = pytest.main(["--collect-only", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *argv[3:]],
                           plugins=[Collected()])
    assert code == 0 and Collected.ids, f"{command}: collects nothing (exit {code})"
    if "-k" in argv:
        word = argv[argv.index("-k") + 1]
        assert all(word in test for test in Collected.ids), Collected.ids


def run_git(command: DocCommand, argv: list[str]) -> None:
    if argv[1] == "commit":
        assert argv[2:3] == ["-m"] and len(argv) == 4, f"{command}: expected git commit -m MESSAGE"
        return
    assert argv[1] == "add", f"{command}: no check for `git {argv[1]}` here"
    for rel in argv[2:]:
        assert (REPO / rel).exists(), f"{command}: {rel} does not exist"
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", rel], timeout=30)
        assert ignored.returncode == 1, f"{command}: git ignores {rel}, so `git add` would refuse it"


# ---- the tests -------------------------------------------------------------------------------------

def command_id(command: DocCommand) -> str:
    return f"{command.doc}:{command.line}:{'_'.join(command.text.split(' #')[0].split()[:3])}"


@pytest.mark.parametrize("command", COMMANDS, ids=command_id)
def test_documented_command_runs_at_tiny_size(command, tiny_data, docs_env, tmp_path, capsys, monkeypatch):
    try:
        argv = command.argv
    except ValueError as exc:
        pytest.fail(f"{command}: not a shell command ({exc}); fence its block ```text if it is not meant to run")
    program = Path(argv[0]).name
    def run_sslbench_line(line: list[str]) -> None:
        run_sslbench(command, line, tiny_data, tmp_path / "out", capsys, monkeypatch)

    if program == "sslbench":
        run_sslbench_line(argv)
    elif program == "make":
        run_make(command, argv, run_sslbench_line)
    elif program.startswith("python") and argv[1:3] == ["-m", "pytest"]:
        run_pytest(command, argv)
    elif program == "git":
        run_git(command, argv)
    else:
        pytest.fail(f"{command}: no runner for `{argv[0]}` in {__file__}; add one, or fence the block "
                    "```text if it is not a command")


def test_every_doc_has_commands_and_every_block_is_marked():
    """The docs parse (no block in an unknown language) and each holds commands, so a broken extractor
    cannot make the test above pass by finding nothing."""
    for doc in DOCS:
        assert doc_commands(doc), f"{doc}: no command found"


def test_the_extractor_reads_continuations_comments_console_and_refuses_unknown_fences():
    text = ("intro\n```bash\n# a comment\nsslbench data prepare --dataset synthetic \\\n    --stride 5   # why\n\n"
            "make test\n```\n\n1. step\n\n   ```console\n   $ sslbench methods\n   output line\n   ```\n"
            "```text\nnot a command\n```\n```toml\n[x]\n```\n")
    found = doc_commands("X.md", text)
    assert [(c.line, c.argv) for c in found] == [
        (4, ["sslbench", "data", "prepare", "--dataset", "synthetic", "--stride", "5"]),
        (7, ["make", "test"]), (13, ["sslbench", "methods"])]
    with pytest.raises(UnmarkedBlock, match=r"X.md:1: a ```yaml block"):
        doc_commands("X.md", "```yaml\nkey: 1\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        fenced_blocks("```bash\nmake test\n", "X.md")
    assert block_commands("X.md", "", 0, ["make \\", "  bench"]) == [DocCommand("X.md", 1, "make bench")]
