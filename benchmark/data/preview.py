"""Preview images of any frame cache: a labelled PNG contact sheet and an animated GIF of videos.

Only the index table, the class names and the frames are used, so it works for every source,
labelled or not: with labels the sheet has a row per class (examples from different subjects);
without, a row per video (frames spread over the clip).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from benchmark.data.cache import FrameCache
from benchmark.errors import UserError

COLUMNS = 8  # examples per row of the contact sheet
GIF_VIDEOS = 4
GIF_FRAMES = 48
MIN_TILE = 96  # small caches are enlarged (nearest neighbour) so structures stay visible
LABEL_WIDTH = 70


def write_preview(caches: dict[str, FrameCache], out_dir: str | Path) -> list[Path]:
    """Write `contact_sheet.png` (and `videos.gif` when a cache holds videos) into `out_dir`."""
    if not caches:
        raise UserError("nothing to preview: no frame cache was given")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the folder ({exc.strerror})") from exc
    written = []
    labelled = _labelled_cache(caches)
    sheet = _class_sheet(labelled) if labelled is not None else _video_sheet(_video_cache(caches))
    written.append(_save(sheet, out / "contact_sheet.png"))
    videos = _video_cache(caches)
    if videos is not None and videos.index.groupby("video_id").size().max() > 1:
        frames, fps = _gif_frames(videos)
        path = out / "videos.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
        written.append(path)
    return written


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def _labelled_cache(caches: dict[str, FrameCache]) -> FrameCache | None:
    """The downstream set if labelled, else any cache with labels."""
    ordered = [caches[r] for r in ("downstream", "pretrain") if r in caches] + list(caches.values())
    for cache in ordered:
        if cache.class_names and (cache.index["label"] >= 0).any():
            return cache
    return None


def _video_cache(caches: dict[str, FrameCache]) -> FrameCache | None:
    """The cache with the longest videos (the pretraining pool, usually)."""
    best, longest = None, 0
    for cache in caches.values():
        if len(cache.index) == 0:
            continue
        n = int(cache.index.groupby("video_id").size().max())
        if n > longest:
            best, longest = cache, n
    return best


def _tile(frame: np.ndarray) -> Image.Image:
    img = Image.fromarray(np.asarray(frame, np.uint8))
    factor = max(1, -(-MIN_TILE // frame.shape[0]))
    return img.resize((frame.shape[1] * factor, frame.shape[0] * factor), Image.NEAREST) if factor > 1 else img


def _grid(rows: list[tuple[str, list[tuple[np.ndarray, str]]]], title: str) -> Image.Image:
    """rows: (row label, [(frame, caption)]) → one image with labels on the left."""
    font = ImageFont.load_default()
    tiles = [[(_tile(f), cap) for f, cap in cells] for _, cells in rows]
    size = max((t.size[0] for row in tiles for t, _ in row), default=MIN_TILE)
    caption_h, title_h = 12, 18
    width = LABEL_WIDTH + COLUMNS * (size + 2)
    height = title_h + len(rows) * (size + caption_h + 4)
    sheet = Image.new("L", (width, height), 24)
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 3), title, fill=255, font=font)
    for r, ((label, _), row) in enumerate(zip(rows, tiles, strict=True)):
        y = title_h + r * (size + caption_h + 4)
        draw.text((4, y + size // 2 - 6), label, fill=255, font=font)
        for c, (tile, cap) in enumerate(row):
            x = LABEL_WIDTH + c * (size + 2)
            sheet.paste(tile, (x, y))
            draw.text((x + 2, y + size + 1), cap, fill=170, font=font)
    return sheet


def _class_sheet(cache: FrameCache) -> Image.Image:
    """A row per class: one example from each of up to COLUMNS different subjects."""
    idx = cache.index
    rng = np.random.default_rng(0)
    rows = []
    for k, name in enumerate(cache.class_names):
        members = idx[idx["label"] == k]
        cells = []
        if len(members):
            subjects = members["subject_id"].astype(str).unique()
            for s in rng.permutation(subjects)[:COLUMNS]:
                pos = members.index[members["subject_id"].astype(str) == s]
                i = int(pos[rng.integers(len(pos))])
                cells.append((cache.frames[i], _short(s)))
        rows.append((name, cells))
    return _grid(rows, f"{cache.meta.get('spec', '')} ({cache.meta.get('role', '')}): "
                       f"a row per class, columns = different subjects")


def _video_sheet(cache: FrameCache | None) -> Image.Image:
    """No labels anywhere: a row per video, frames spread over the clip."""
    if cache is None:
        raise UserError("nothing to preview: the caches hold no frames")
    rows = []
    for vid, group in _pick_videos(cache.index, 6):
        pos = group.index[np.linspace(0, len(group) - 1, min(COLUMNS, len(group))).round().astype(int)]
        rows.append((_short(vid), [(cache.frames[int(i)], f"#{int(cache.index.at[i, 'frame_idx'])}")
                                   for i in pos]))
    return _grid(rows, f"{cache.meta.get('spec', '')} ({cache.meta.get('role', '')}): a row per video")


def _pick_videos(index: pd.DataFrame, n: int) -> list[tuple[str, pd.DataFrame]]:
    """Up to n videos, from as many different subjects as possible, longest first."""
    groups = sorted(index.groupby("video_id", sort=True), key=lambda g: -len(g[1]))
    chosen, seen = [], set()
    for vid, g in groups:
        subject = str(g["subject_id"].iloc[0])
        if subject not in seen:
            chosen.append((str(vid), g.sort_values("frame_idx")))
            seen.add(subject)
        if len(chosen) == n:
            break
    return chosen


def _gif_frames(cache: FrameCache) -> tuple[list[Image.Image], float]:
    """A 2×2 mosaic of videos played together, each tile captioned with the frame's class."""
    font = ImageFont.load_default()
    videos = _pick_videos(cache.index, GIF_VIDEOS)
    length = min(GIF_FRAMES, max(len(g) for _, g in videos))
    size = _tile(cache.frames[0]).size[0]
    cols = 2 if len(videos) > 1 else 1
    rows = -(-len(videos) // cols)
    names = cache.class_names
    out = []
    for t in range(length):
        canvas = Image.new("L", (cols * size, rows * size), 0)
        draw = ImageDraw.Draw(canvas)
        for v, (vid, g) in enumerate(videos):
            i = int(g.index[min(t, len(g) - 1)])
            x, y = (v % cols) * size, (v // cols) * size
            canvas.paste(_tile(cache.frames[i]), (x, y))
            label = int(cache.index.at[i, "label"])
            caption = names[label] if 0 <= label < len(names) else _short(vid)
            draw.text((x + 3, y + size - 13), caption, fill=255, font=font)
        out.append(canvas)
    fps = float(cache.meta.get("settings", {}).get("fps", 15) or 15)
    return out, min(fps, 30.0)


def _short(text: str, n: int = 14) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]
