"""README's real-data command, as written there, on real-format data: short video clips encoded with
PyAV and a FETAL_PLANES_DB-layout folder (Images/*.png and its semicolon CSV). Only the tiny preset
and the output folders are added."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from leaderboard.results import validate_result
from tests.e2e.doc_commands import doc_commands
from tests.e2e.test_bench_cli import TINY
from tests.unit.test_sources_images import PLANES, make_fetal_planes_db
from tests.unit.test_sources_videos import encode_clip


def readme_real_data_command() -> list[str]:
    """The `sslbench bench … --downstream …` command of README's "Your own data" section, as argv."""
    (argv,) = [c.argv for c in doc_commands("README.md")
               if c.argv[:2] == ["sslbench", "bench"] and "--downstream" in c.argv]
    return argv


def test_the_readme_command_parses_and_names_real_data_folders():
    argv = readme_real_data_command()
    assert argv[:2] == ["sslbench", "bench"]
    assert any(a.startswith("videos:") for a in argv) and any(a.startswith("fetal_planes_db:") for a in argv)


@pytest.mark.slow
@pytest.mark.parametrize("missing_image", [False, True])
def test_readme_real_data_command_runs_to_results(tmp_path, missing_image):
    """As written; and with an image of the FETAL_PLANES_DB folder missing, plus --downstream-on-error
    skip, whose count the results record."""
    clips = tmp_path / "clips"
    for k in range(4):  # 4 subjects × 20 frames, every 5th kept: 16 pretraining frames
        encode_clip(clips / f"patient{k}" / f"cine{k}.mp4", n_frames=20, seed=k)
    fpdb = make_fetal_planes_db(tmp_path / "FETAL_PLANES_ZENODO", patients=8)
    extra = []
    if missing_image:
        next((fpdb / "Images").glob("*.png")).unlink()
        extra = ["--downstream-on-error", "skip"]

    argv = readme_real_data_command()
    paths = {"videos": clips, "fetal_planes_db": fpdb}
    for i, arg in enumerate(argv):
        kind, sep, _ = arg.partition(":")
        if sep and kind in paths:
            argv[i] = f"{kind}:{paths[kind]}"
    command = [sys.executable, "-m", "benchmark", *argv[1:], "--preset", str(TINY),
               "--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
               "--cache-dir", str(tmp_path / "cache"), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]

    track = "videos-clips+fetal_planes_db-efficientnet_lite0-32px-tiny"
    files = sorted((tmp_path / "results" / track).rglob("*.json"))
    method = argv[argv.index("--method") + 1]
    assert {p.relative_to(tmp_path / "results" / track).parts[0] for p in files} == {method, "imagenet", "random"}
    for path in files:
        record = json.loads(path.read_text())
        validate_result(record, str(path))
        assert record["track"]["pretrain_dataset"] == f"videos:{clips}"
        assert set(record["class_names"]) == set(PLANES)  # FETAL_PLANES_DB's planes are the classes
    pretrained = json.loads(next(p for p in files if p.parts[-5] == method).read_text())
    assert pretrained["init"]["pretrain"]["frames"] == 16  # every 5th of 4 × 20 frames: --stride reached the clips
    skipped = int(missing_image)
    assert pretrained["provenance"]["skipped_files"] == {"downstream": skipped, "pretrain": 0}
    assert (f"{skipped} file skipped" in done.stderr) == missing_image
