"""uint8 batches from the frame cache to the training device; augmentation happens there.

Three paths, picked by `make_loader`:
- resident (GPU, cache fits): the whole uint8 cache is copied to the GPU once and batches are
  indexed there; the host only sends B row numbers per step.
- streamed (GPU, cache too big): a background thread gathers rows from the memmap into a ring of
  pinned buffers and copies each on a side CUDA stream, so gathering and the host→device copy
  overlap the previous step; the training stream waits on the copy's event, not the whole device.
- CPU: a plain gather.
On a GPU `placement="auto"` chooses by free memory; "resident" or "streamed" forces one path (to
compare the two, or to keep the cache off a GPU that other work shares).

The loader is a re-iterable with a length (Lightning's epoch), and each `iter()` starts at the
step the trainer has completed (`step_source()`), so after a resume the data continue exactly
where the killed run stopped: which rows a step uses is the sampler's function of (seed, step).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.errors import UserError
from benchmark.pretrain.sampler import PairSampler

# Keep the cache resident only if it leaves most of the GPU memory to the model.
RESIDENT_FRACTION = 0.25
PLACEMENTS = ("auto", "resident", "streamed")


@dataclass
class FrameBatch:
    step: int
    anchors: torch.Tensor  # B×H×W uint8 on the training device
    positives: torch.Tensor | None  # B×H×W uint8, or None when the positive is the anchor itself


class _BaseLoader:
    placement = ""  # "cpu" | "resident" | "streamed": which path, recorded with the checkpoint

    def __init__(self, sampler: PairSampler, step_source: Callable[[], int], total_steps: int):
        self.sampler = sampler
        self.step_source = step_source
        self.total_steps = total_steps

    def __len__(self) -> int:
        return self.sampler.steps_per_epoch

    def _steps(self) -> range:
        start = self.step_source()
        epoch_end = (start // self.sampler.steps_per_epoch + 1) * self.sampler.steps_per_epoch
        return range(start, min(epoch_end, self.total_steps))

    # Lightning checks for this interface to know that a mid-epoch resume is exact; the state itself
    # is the trainer's global step, which Lightning restores before it iterates.
    def state_dict(self) -> dict:
        return {"step": int(self.step_source())}

    def load_state_dict(self, state: dict) -> None:
        pass


class CPULoader(_BaseLoader):
    placement = "cpu"

    def __init__(self, frames: np.ndarray, sampler: PairSampler, step_source: Callable[[], int],
                 total_steps: int):
        super().__init__(sampler, step_source, total_steps)
        self.frames = frames

    def __iter__(self) -> Iterator[FrameBatch]:
        for step in self._steps():
            a, b = self.sampler.batch(step)
            yield FrameBatch(step, torch.from_numpy(self.frames[a]),
                             None if b is None else torch.from_numpy(self.frames[b]))


class ResidentLoader(_BaseLoader):
    placement = "resident"

    def __init__(self, frames: np.ndarray, sampler: PairSampler, step_source: Callable[[], int],
                 total_steps: int, device: torch.device):
        super().__init__(sampler, step_source, total_steps)
        self.device = device
        self.frames = torch.empty(frames.shape, dtype=torch.uint8, device=device)
        chunk = max(1, (256 << 20) // max(1, frames[0].nbytes))  # 256 MiB at a time: bounded host memory
        for start in range(0, len(frames), chunk):
            part = torch.from_numpy(np.array(frames[start:start + chunk]))  # a copy: the memmap is read-only
            self.frames[start:start + chunk].copy_(part)

    def __iter__(self) -> Iterator[FrameBatch]:
        bsz = self.sampler.batch_size
        for step in self._steps():
            a, b = self.sampler.batch(step)
            idx = torch.from_numpy(a if b is None else np.concatenate([a, b]))
            # Pinned + non-blocking: no wait for the device; the caching host allocator keeps the
            # pinned block until its copy has run.
            dev_idx = idx.pin_memory().to(self.device, non_blocking=True)
            rows = self.frames.index_select(0, dev_idx)
            yield FrameBatch(step, rows[:bsz], None if b is None else rows[bsz:])


class StreamedLoader(_BaseLoader):
    placement = "streamed"

    def __init__(self, frames: np.ndarray, sampler: PairSampler, step_source: Callable[[], int],
                 total_steps: int, device: torch.device, depth: int = 3):
        super().__init__(sampler, step_source, total_steps)
        self.frames = frames
        self.device = device
        self.depth = depth
        n = 2 * sampler.batch_size if sampler.positives.mode == "temporal" else sampler.batch_size
        self._host = [torch.empty((n, *frames.shape[1:]), dtype=torch.uint8).pin_memory() for _ in range(depth)]

    def __iter__(self) -> Iterator[FrameBatch]:
        steps = self._steps()
        out: queue.Queue = queue.Queue(maxsize=self.depth - 1)
        stop = threading.Event()
        copy_stream = torch.cuda.Stream(self.device)
        bsz = self.sampler.batch_size

        def produce() -> None:
            events: list[torch.cuda.Event | None] = [None] * self.depth
            try:
                for i, step in enumerate(steps):
                    slot = i % self.depth
                    if events[slot] is not None:
                        events[slot].synchronize()  # its previous copy has left the pinned buffer
                    a, b = self.sampler.batch(step)
                    rows = a if b is None else np.concatenate([a, b])
                    host = self._host[slot][:len(rows)]
                    np.take(self.frames, rows, axis=0, out=host.numpy())
                    with torch.cuda.stream(copy_stream):
                        dev = host.to(self.device, non_blocking=True)
                        ev = torch.cuda.Event()
                        ev.record(copy_stream)
                    events[slot] = ev
                    while not stop.is_set():
                        try:
                            out.put((step, dev, ev, b is not None), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                out.put(None)
            except BaseException as exc:  # surfaced in the training thread
                out.put(exc)

        worker = threading.Thread(target=produce, name="sslbench-frame-gather", daemon=True)
        worker.start()
        try:
            while True:
                item = out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                step, dev, ev, paired = item
                main = torch.cuda.current_stream(self.device)
                main.wait_event(ev)
                dev.record_stream(main)  # allocated on the copy stream, used on the training stream
                yield FrameBatch(step, dev[:bsz], dev[bsz:] if paired else None)
        finally:
            stop.set()
            worker.join(timeout=5)


def choose_placement(nbytes: int, free_bytes: int, placement: str = "auto") -> str:
    """Where a GPU run keeps a cache of `nbytes`: "resident" or "streamed" (`placement` forces one)."""
    if placement not in PLACEMENTS:
        raise UserError(f"frame placement {placement!r} is not one of {', '.join(PLACEMENTS)}")
    if placement != "auto":
        return placement
    return "resident" if nbytes < RESIDENT_FRACTION * free_bytes else "streamed"


def make_loader(frames: np.ndarray, sampler: PairSampler, step_source: Callable[[], int], total_steps: int,
                device: torch.device, placement: str = "auto") -> _BaseLoader:
    if device.type != "cuda":
        choose_placement(frames.nbytes, 0, placement)  # a bad value fails on a CPU too
        return CPULoader(frames, sampler, step_source, total_steps)
    free, _total = torch.cuda.mem_get_info(device)
    if choose_placement(frames.nbytes, free, placement) == "resident":
        return ResidentLoader(frames, sampler, step_source, total_steps, device)
    return StreamedLoader(frames, sampler, step_source, total_steps, device)
