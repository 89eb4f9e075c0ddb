"""A write that fails half-way leaves the previous file intact: result JSONs and encoder checkpoints.

The failure is real, not mocked: the writer runs in a child process whose file-size limit
(RLIMIT_FSIZE) is half the new file's size, so the operating system refuses the second half of the
write (EFBIG) whatever code path does it. A direct write truncates the target first and leaves half
a file; a write through a temporary file and a rename leaves the old file untouched.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.checkpoint import read_meta, save_encoder
from leaderboard.results import write_result
from tests.unit.downstream_fakes import TinyEncoder
from tests.unit.test_runner import record

ROOT = Path(__file__).resolve().parents[2]

# Everything is imported before the limit is set (a failed .pyc write is harmless, but a clean run is
# easier to read); SIGXFSZ is ignored so the write fails with EFBIG instead of killing the child.
LIMITED = """
import json, resource, signal, sys
from pathlib import Path
{imports}
args = json.loads(sys.argv[1])
{prepare}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (args["limit"], resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    {write}
except Exception as exc:
    print(f"{{type(exc).__name__}}: {{exc}}")
    sys.exit(3)
"""

pytestmark = pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_FSIZE)[0] not in (resource.RLIM_INFINITY,),
                                reason="needs an unlimited file size to begin with")


def write_with_file_size_limit(imports: str, prepare: str, write: str, **args) -> subprocess.CompletedProcess:
    code = LIMITED.format(imports=imports, prepare=prepare, write=write)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 3, f"the limited write did not fail as intended:\n{proc.stdout}\n{proc.stderr[-2000:]}"
    return proc


def test_a_result_write_that_fails_half_way_leaves_the_previous_result(tmp_path):
    path = tmp_path / "track" / "random" / "linear_probe" / "10pct" / "seed0.json"
    old = record("a" * 64)
    write_result(path, old)
    before = path.read_bytes()
    new = record("b" * 64)
    new["provenance"]["command"] = "x" * 4000  # the new file is much larger than the old one
    size = len(json.dumps(new, indent=1, sort_keys=True)) + 1
    proc = write_with_file_size_limit(
        "from leaderboard.results import write_result, validate_result", "validate_result(args['record'])",
        "write_result(Path(args['path']), args['record'])", path=str(path), record=new, limit=size // 2)
    assert path.read_bytes() == before
    assert json.loads(path.read_text())["job"]["key"] == "a" * 64
    assert sorted(p.name for p in path.parent.iterdir()) == ["seed0.json"]  # no temporary file left either
    assert proc.stdout.strip() == (f"ResultsError: cannot write {path}: File too large ({path.parent}); pass "
                                   "--results-dir (or set SSLBENCH_RESULTS_DIR) to a writable folder")


def test_a_checkpoint_write_that_fails_half_way_leaves_the_previous_checkpoint(tmp_path):
    from safetensors.torch import load_file

    path = tmp_path / "run" / "encoder.safetensors"
    torch.manual_seed(0)
    old = TinyEncoder()
    save_encoder(path, old, {"method": "vicreg", "steps": 1})
    before = path.read_bytes()
    proc = write_with_file_size_limit(
        "import torch\nfrom benchmark.checkpoint import save_encoder\nfrom tests.unit.downstream_fakes import TinyEncoder",
        "torch.manual_seed(1)\nencoder = TinyEncoder()",
        "save_encoder(Path(args['path']), encoder, {'method': 'vicreg', 'steps': 2})",
        path=str(path), limit=len(before) // 2)
    assert path.read_bytes() == before
    assert read_meta(path)["steps"] == 1
    weights = load_file(str(path))
    for name, value in old.state_dict().items():
        assert torch.equal(weights[name], value), name
    assert [p.name for p in path.parent.iterdir()] == ["encoder.safetensors"]
    assert "File too large" in proc.stdout
