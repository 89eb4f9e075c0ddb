"""Named kill points, for the kill-and-resume tests only.

With `SSLBENCH_TEST_KILL_AT=<stage>` (or `<stage>:<n>`) in its environment, a process sends itself
SIGKILL the first (or n-th) time it reaches `kill_point("<stage>")`, so a test kills a run at a
named place instead of racing a timer; with `SSLBENCH_TEST_KILL_SIGNAL=TERM` it sends SIGTERM instead
(a scheduler's preemption, which the process handles). Unset (always, outside those tests) it costs
one dict lookup.

Stages: `cache_clip` (a clip was written into a cache being built), `pretrain_step` (a pretraining
step ended and its checkpoint, if one was due, is on disk), `features` (feature extraction for the
linear probe begins), `finetune` (a fine-tune job begins), `finetune_epoch` (a fine-tune epoch ended
and its resume state, if one was due, is on disk).
"""
from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "SSLBENCH_TEST_KILL_AT"
SIGNAL_ENV = "SSLBENCH_TEST_KILL_SIGNAL"
_reached: Counter[str] = Counter()


def kill_point(stage: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != stage:
        return
    _reached[stage] += 1
    if _reached[stage] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get(SIGNAL_ENV, "KILL").upper()))
