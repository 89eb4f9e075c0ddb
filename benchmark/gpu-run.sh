#!/usr/bin/env bash
# One GPU session on a machine without network access, in one command:
#
#   OUT=/path/to/out bash benchmark/gpu-run.sh [sslbench session options]
#
# 1. installs the wheels brought along in $WHEELS (default .whl/ of this checkout) into $SITE
#    (default /tmp/site), offline and without dependencies, and puts $SITE and this checkout on
#    PYTHONPATH (no virtual environment, no make);
# 2. runs `sslbench session`: the device check (`sslbench doctor`), then the grid of the preset
#    (auto: standard on a GPU) one init at a time, each started only if it is expected to end
#    within the time limit;
# 3. everything lands in $OUT (default ./gpu-out): doctor/doctor.md and doctor.json (the device
#    check and throughput table), results/, logs/, SESSION.md and session.json, nvidia-smi.txt,
#    and runs/ with the checkpoints of methods whose jobs are not all done.
# The time limit counts from the session's start: $TIME_LIMIT (default 9m, for a 10-minute call
# with the wheel install before it); a --time-limit option given here wins.
# Copy the checkout with its .git folder (a `git clone --depth 1` is enough): results record their
# commit, and from a copy without one the session runs the device check only.
# Exit status: that of `sslbench session` (0 all planned jobs done, 75 time ran out, 1 a step failed).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
out=${OUT:-$PWD/gpu-out}
wheels=${WHEELS:-.whl}
mkdir -p "$out"
{ nvidia-smi || echo "nvidia-smi: not available"; } > "$out/nvidia-smi.txt" 2>&1

if compgen -G "$wheels/*.whl" > /dev/null; then
  site=${SITE:-/tmp/site}
  echo "installing $(find "$wheels" -maxdepth 1 -name '*.whl' | wc -l) wheels from $wheels into $site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$wheels"/*.whl
  export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no wheels in $wheels: using the packages installed for $python"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$python" -m benchmark session --out "$out" --time-limit "${TIME_LIMIT:-9m}" "$@"
