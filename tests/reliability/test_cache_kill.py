"""Killing a cache build halfway must never leave a cache that later looks complete."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import tests.fake_source  # noqa: F401
from benchmark.data.cache import prepare
from benchmark.data.spec import parse_dataset_spec

ROOT = Path(__file__).resolve().parents[2]
BUILD = """
import tests.fake_source
from benchmark.data.cache import prepare
from benchmark.data.spec import parse_dataset_spec
prepare(parse_dataset_spec("fake", subjects=40, delay=0.1), "pretrain", {cache!r}, progress=False)
"""


def test_killed_build_leaves_no_finished_cache_and_is_rebuilt(tmp_path):
    cache_dir = tmp_path / "cache"
    marker = tmp_path / "progress"
    env = {**os.environ, "FAKE_SOURCE_PROGRESS": str(marker), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", BUILD.format(cache=str(cache_dir))], env=env, cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and (not marker.exists() or len(marker.read_text().split()) < 5):
        time.sleep(0.05)
    assert marker.exists(), "the build never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = [p for p in cache_dir.iterdir() if (p / "meta.json").exists()]
    assert finished == []
    assert list(cache_dir.glob(".tmp-*")), "the killed build should have left only a temporary folder"

    cache = prepare(parse_dataset_spec("fake", subjects=40, delay=0.0), "pretrain", cache_dir, progress=False)
    assert cache.frames.shape[0] == 40 * 4
    assert not list(cache_dir.glob(".tmp-*")), "stale temporary folders are cleaned up"
