"""Killing a cache build halfway must never leave a cache that later looks complete."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import tests.fake_source  # noqa: F401
from benchmark.data.cache import prepare
from benchmark.data.spec import parse_dataset_spec
from benchmark.kill_points import ENV

ROOT = Path(__file__).resolve().parents[2]
BUILD = """
import tests.fake_source
from benchmark.data.cache import prepare
from benchmark.data.spec import parse_dataset_spec
prepare(parse_dataset_spec("fake", subjects=40), "pretrain", {cache!r}, progress=False)
"""


def test_killed_build_leaves_no_finished_cache_and_is_rebuilt(tmp_path):
    cache_dir = tmp_path / "cache"
    # SIGKILL right after the 5th of 40 clips is written.
    env = {**os.environ, ENV: "cache_clip:5", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", BUILD.format(cache=str(cache_dir))], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [p for p in cache_dir.iterdir() if (p / "meta.json").exists()] == []
    (partial,) = cache_dir.glob(".tmp-*")  # the killed build left only its temporary folder
    assert (partial / "frames.u8").exists()
    assert not (partial / "meta.json").exists()

    cache = prepare(parse_dataset_spec("fake", subjects=40), "pretrain", cache_dir, progress=False)
    assert cache.frames.shape[0] == 40 * 4
    assert not list(cache_dir.glob(".tmp-*")), "stale temporary folders are cleaned up"
