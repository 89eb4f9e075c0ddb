"""Frame preparation (gray, auto crop, square resize) and the parallel decoder shared by all file sources."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.files import compile_subject_pattern, subject_of
from benchmark.data.sources.parallel import decode_all
from benchmark.data.sources.pixels import crop_box, prepare_frames, square_resize, to_gray, to_uint8
from benchmark.data.sources.readers import FileTask, decode_file, kept_indices
from benchmark.errors import UserError

SECTOR = (20, 60, 14, 58)  # y0, y1, x0, x1 of the moving region in the clips below


def ultrasound_like_clip(t=8, h=72, w=80, seed=0) -> np.ndarray:
    """A moving speckle region framed by a static grey border, a static white text block and a
    static caliper mark — what a scanner's screen recording looks like."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((t, h, w), np.uint8)
    frames[:, :, :3] = 90  # border
    frames[:, 2:9, 8:40] = 255  # burnt-in text
    frames[:, 64:67, 70:78] = 200  # caliper
    y0, y1, x0, x1 = SECTOR
    frames[:, y0:y1, x0:x1] = rng.integers(40, 230, (t, y1 - y0, x1 - x0))
    return frames


def test_to_gray_handles_colour_wide_and_float_data():
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[..., 0] = 255
    assert to_gray(rgb).shape == (2, 4, 4) and to_gray(rgb)[0, 0, 0] == round(0.299 * 255)
    wide = np.array([[[0, 1000], [2000, 4000]]], np.uint16)
    assert to_gray(wide).tolist() == [[[0, 64], [128, 255]]]
    assert to_uint8(np.array([[0.0, 0.5, 1.0]], np.float32)).tolist() == [[0, 128, 255]]
    with pytest.raises(ValueError, match="channels"):
        to_gray(np.zeros((1, 4, 4, 2), np.uint8))


def test_auto_crop_keeps_the_moving_region_and_drops_text_border_and_calipers():
    clip = ultrasound_like_clip()
    assert crop_box(clip, "auto") == SECTOR
    assert crop_box(clip, "none") == (0, 72, 0, 80)
    out = prepare_frames(clip, "auto", 32)
    assert out.shape == (8, 32, 32)
    assert out.max() < 240  # the 255 text block is gone
    assert prepare_frames(clip, "none", 32).max() == 255


def test_auto_crop_survives_codec_noise_on_static_pixels():
    clip = ultrasound_like_clip().astype(np.int16)
    noise = np.random.default_rng(1).integers(-3, 4, clip.shape)
    noisy = np.clip(clip + noise, 0, 255).astype(np.uint8)
    y0, y1, x0, x1 = crop_box(noisy, "auto")
    assert abs(y0 - SECTOR[0]) <= 1 and abs(y1 - SECTOR[1]) <= 1
    assert abs(x0 - SECTOR[2]) <= 1 and abs(x1 - SECTOR[3]) <= 1


def test_auto_crop_of_a_single_image_keeps_the_largest_bright_region():
    image = np.zeros((1, 64, 64), np.uint8)
    image[0, 2:6, 2:20] = 255  # text, a small separate region
    image[0, 16:60, 10:54] = 150  # the scan
    assert crop_box(image, "auto") == (16, 60, 10, 54)


def test_square_resize_letterboxes_instead_of_stretching():
    frames = np.full((1, 10, 40), 200, np.uint8)
    out = square_resize(frames, (0, 10, 0, 40), 40)
    assert out.shape == (1, 40, 40)
    assert out[0, :10].max() == 0 and out[0, -10:].max() == 0  # black bars above and below
    assert out[0, 20].min() == 200
    same = np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64).astype(np.uint8)
    assert np.array_equal(square_resize(same, (0, 64, 0, 64), 64), same)  # no resampling at native size


def test_kept_indices_apply_stride_then_max_frames():
    assert kept_indices(10, 3, None).tolist() == [0, 3, 6, 9]
    assert kept_indices(10, 2, 2).tolist() == [0, 2]


def test_subject_rules():
    assert subject_of("pat7/clip.mp4", None) == "pat7"
    assert subject_of("clip.mp4", None) == "clip"
    pattern = compile_subject_pattern(r"(P\d+)_")
    assert subject_of("x/P12_a.mp4", pattern) == "P12"
    with pytest.raises(ValueError, match="does not match"):
        subject_of("other.mp4", pattern)
    with pytest.raises(UserError, match="needs a group"):
        compile_subject_pattern(r"P\d+")
    with pytest.raises(UserError, match="not a valid regular expression"):
        compile_subject_pattern("(P")


def _write_png(path, value):
    from PIL import Image

    Image.fromarray(np.full((12, 16), value, np.uint8)).save(path)


def test_parallel_decoding_keeps_order_and_turns_errors_into_skipped(tmp_path):
    paths = []
    for k in range(6):
        p = tmp_path / f"img{k}.png"
        if k == 3:
            p.write_bytes(b"not a png at all")
        else:
            _write_png(p, 40 * k)
        paths.append(str(p))
    tasks = [FileTask(path=p, video_id=f"v{k}", subject_id="s", resolution=8, crop="none", reader="image")
             for k, p in enumerate(paths)]
    pooled = list(decode_all(decode_file, tasks, paths, workers=2))
    inline = list(decode_all(decode_file, tasks, paths, workers=1))
    assert [type(r) for r in pooled] == [Clip, Clip, Clip, Skipped, Clip, Clip]
    assert [r.video_id for r in pooled if isinstance(r, Clip)] == ["v0", "v1", "v2", "v4", "v5"]
    assert [int(r.frames[0, 4, 4]) for r in pooled if isinstance(r, Clip)] == [0, 40, 80, 160, 200]
    assert pooled[3].path == paths[3] and "UnidentifiedImageError" in pooled[3].reason
    assert [getattr(r, "video_id", None) for r in inline] == [getattr(r, "video_id", None) for r in pooled]


HELD = threading.Lock()


def _needs_the_lock(task: int) -> int:
    if not HELD.acquire(timeout=3):
        raise TimeoutError("a lock another thread of the parent held when the worker started")
    HELD.release()
    return task


def test_workers_do_not_inherit_locks_held_by_other_threads_of_the_parent():
    """A forked worker copies every lock as it is at that instant: one that another thread holds
    stays held in the worker for ever (the suite once stalled so). Workers start from a forkserver."""
    taken, done = threading.Event(), threading.Event()

    def hold():
        with HELD:
            taken.set()
            done.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        results = list(decode_all(_needs_the_lock, [1, 2, 3], ["a", "b", "c"], workers=2))
    finally:
        done.set()
        holder.join()
    assert results == [1, 2, 3]


@pytest.mark.parametrize("guarded", [True, False])
def test_a_script_that_starts_workers_needs_a_main_guard_and_is_told_so(tmp_path, guarded):
    """Workers import the script that started them (as with spawn, and Python 3.14's default)."""
    body = "print(list(decode_all(_needs_the_lock, [1, 2, 3], ['a', 'b', 'c'], workers=2)))"
    script = tmp_path / "script.py"
    script.write_text("from benchmark.data.sources.parallel import decode_all\n"
                      "from tests.unit.test_sources_frames import _needs_the_lock\n"
                      + (f"if __name__ == '__main__':\n    {body}\n" if guarded else body + "\n"))
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    if guarded:
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "[1, 2, 3]"
    else:
        assert run.returncode != 0
        assert "a decoding worker process died" in run.stderr and '`if __name__ == "__main__":` guard' in run.stderr


def test_auto_crop_of_a_fan_sector_with_a_scrolling_ecg_and_a_ticking_clock():
    t, h, w = 12, 96, 128
    yy, xx = np.mgrid[:h, :w]
    apex_y, apex_x = 10, 64
    radius = np.hypot(yy - apex_y, xx - apex_x)
    angle = np.degrees(np.arctan2(xx - apex_x, yy - apex_y))
    fan = (radius < 70) & (np.abs(angle) < 35)
    rng = np.random.default_rng(0)
    speckle = rng.integers(30, 220, (h, w + t))
    frames = np.zeros((t, h, w), np.uint8)
    for k in range(t):
        frames[k][fan] = speckle[:, k:k + w][fan]  # tissue drifting sideways by a pixel per frame
        frames[k, 88:92, (4 * k) % 100:(4 * k) % 100 + 8] = 255  # ECG trace sweeping along the bottom
        frames[k, 2:6, 110 + k % 3:116 + k % 3] = 200  # a clock that ticks
        frames[k, 2:8, 2:40] = 255  # static patient name
    ys, xs = np.nonzero(fan)
    y0, y1, x0, x1 = crop_box(frames, "auto")
    assert abs(y0 - ys.min()) <= 2 and abs(y1 - (ys.max() + 1)) <= 2
    assert abs(x0 - xs.min()) <= 2 and abs(x1 - (xs.max() + 1)) <= 2
