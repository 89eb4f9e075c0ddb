"""The frame cache: every source is decoded once into a uint8 N×H×W memmap plus an index table.

Layout of one cache (a folder under the cache directory, named `<kind>-<role>-<fingerprint>`):

    frames.u8     raw uint8 frames, N×H×W, C order (np.memmap)
    index.csv     one row per frame: video_id, subject_id, frame_idx, label, split, scanner
    meta.json     fingerprint, shape, class names, source settings, counts (among them the clips
                  without a subject id) — written last
    skipped.csv   (only with --on-error skip) every file left out, with the reason

A build writes into a hidden temporary folder and renames it into place only when complete, so a
killed build never leaves a cache that looks finished; stale temporary folders are removed by the
next build. The fingerprint covers the source's settings and its files' identity (see
`Source.fingerprint_parts`), so a changed source or setting builds a new cache.

The `scanner` column (the machine that acquired a frame, "" when the source does not know it) came
after the first caches were built. A cache without it still loads (every scanner then reads ""): for
a source that records no scanner that is exactly what a new build gives, so its fingerprint, and the
results keyed by it, are unchanged. A source that records scanners says so in its fingerprint parts
(the simulator's `scanners` knob, FETAL_PLANES_DB's `US_Machine`, a manifest's scanner column), so
its caches built before the column existed are rebuilt rather than read without scanners.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.source import ROLES, SPLITS, UNLABELLED, Clip, Skipped, Source
from benchmark.data.splits import assign_subject_splits
from benchmark.errors import DataError, UserError
from benchmark.folders import ensure_writable
from benchmark.kill_points import kill_point

CACHE_FORMAT = 1
INDEX_COLUMNS = ["video_id", "subject_id", "frame_idx", "label", "split", "scanner"]
UNKNOWN_SCANNER = ""


def default_cache_dir() -> Path:
    env = os.environ.get("SSLBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sslbench"


@dataclass
class FrameCache:
    root: Path
    frames: np.ndarray  # N×H×W uint8, read-only memmap
    index: pd.DataFrame  # RangeIndex, INDEX_COLUMNS
    class_names: list[str]
    meta: dict

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def resolution(self) -> int:
        return int(self.frames.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_positions(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.index["split"].to_numpy() == split)

    @property
    def scanners(self) -> list[str]:
        """The known scanners of the labelled frames, sorted ("" — unknown — is not one)."""
        labelled = self.index[self.index["label"] >= 0]
        return sorted(s for s in labelled["scanner"].unique() if s != UNKNOWN_SCANNER)

    def labelled_positions(self, split: str) -> np.ndarray:
        """Row positions of the labelled frames of `split`."""
        pos = self.split_positions(split)
        return pos[self.index["label"].to_numpy()[pos] >= 0]

    @classmethod
    def load(cls, root: str | Path) -> FrameCache:
        root = Path(root)
        meta_path = root / "meta.json"
        if not meta_path.exists():
            raise UserError(f"{root} is not a finished frame cache (no meta.json); "
                            "run `sslbench data prepare` again to build it")
        meta = json.loads(meta_path.read_text())
        n, h, w = meta["shape"]
        frames = np.memmap(root / "frames.u8", dtype=np.uint8, mode="r", shape=(n, h, w)) if n else \
            np.zeros((0, h, w), np.uint8)
        # Ids are text as the source gave them: "007" stays "007", and a subject called "NA" or "nan"
        # is not turned into a missing value (which groupby would then drop from every split).
        index = pd.read_csv(root / "index.csv", dtype={"video_id": str, "subject_id": str, "split": str,
                                                       "scanner": str}, keep_default_na=False)
        if "scanner" not in index.columns:  # a cache built before the column existed
            index["scanner"] = UNKNOWN_SCANNER
        return cls(root=root, frames=frames, index=index, class_names=list(meta["class_names"]), meta=meta)

    def summary(self) -> str:
        idx = self.index
        lines = [
            f"cache      {self.root}",
            f"source     {self.meta['spec']} ({self.meta['role']}), fingerprint {self.fingerprint[:16]}",
            f"frames     {len(idx):,} of {self.resolution}×{self.resolution} px "
            f"({self.frames.nbytes / 2**20:.1f} MiB)",
            f"videos     {idx['video_id'].nunique():,}",
            f"subjects   {idx['subject_id'].nunique():,}",
        ]
        splits = idx["split"].value_counts()
        if self.scanners:
            lines.append(f"scanners   {', '.join(self.scanners)}")
        lines.append("splits     " + ", ".join(f"{s} {splits[s]:,}" for s in ("pretrain", "train", "val", "test")
                                                if s in splits))
        if self.class_names:
            counts = idx[idx["label"] >= 0].groupby(["label", "split"]).size().unstack(fill_value=0)
            lines.append("classes    " + ", ".join(
                f"{name} {int(counts.loc[k].sum()) if k in counts.index else 0:,}"
                for k, name in enumerate(self.class_names)))
        if self.meta.get("skipped"):
            lines.append(f"skipped    {self.meta['skipped']} files (report: {self.root / 'skipped.csv'})")
        warning = self.subject_warning()
        if warning:
            lines.append(f"warning    {warning}")
        return "\n".join(lines)

    @property
    def clips_without_subject(self) -> int | None:
        """How many clips (files, images) had no subject id, so that each is its own subject; None for a
        cache built before this was recorded."""
        n = self.meta.get("clips_without_subject")
        return None if n is None else int(n)

    def subject_warning(self) -> str | None:
        """For a downstream cache some of whose clips have no subject id: why its train/val/test splits
        cannot be subject-disjoint, and the fix. None otherwise."""
        n = self.clips_without_subject
        if not n or self.meta.get("role") != "downstream":
            return None
        total = int(self.meta.get("clips") or 0)
        which = f"none of its {total:,} labelled files has a" if n == total else \
            f"{n:,} of its {total:,} labelled files have no"
        return (f"{self.meta['spec']}: {which} subject id, so each such file is its own subject and the "
                "train/val/test splits cannot be subject-disjoint (images of one patient may be in train and "
                "test, which inflates the scores); give the subjects with a subject column "
                "in the manifest, one sub-folder per subject, or --subject-pattern")

    def card(self) -> dict:
        """The data card of this cache, as results record it (provenance.data.<role>): source kind and
        spec, frames, videos, subjects, frames and subjects per split, labelled frames per class and
        split, the source's settings (`card_settings`), and the clips without a subject id (absent for
        a cache built before it was recorded).
        The fingerprint and the skipped files are recorded beside it."""
        idx = self.index
        splits = {str(s): {"frames": int(len(g)), "subjects": int(g["subject_id"].nunique())}
                  for s, g in idx.groupby("split", sort=False)}
        labelled = idx[idx["label"] >= 0]
        counts = labelled.groupby(["label", "split"]).size()
        classes = {name: {sp: int(counts[(label, sp)]) for sp in SPLITS if (label, sp) in counts.index}
                   for label, name in enumerate(self.class_names)}
        card = {"kind": self.meta.get("kind", ""), "spec": self.meta.get("spec", ""), "frames": int(len(idx)),
                "videos": int(idx["video_id"].nunique()), "subjects": int(idx["subject_id"].nunique()),
                "splits": {s: splits[s] for s in SPLITS if s in splits}, "classes": classes}
        if self.meta.get("settings"):
            card["settings"] = card_settings(self.meta["settings"])
        if self.clips_without_subject is not None:
            card["clips"] = int(self.meta.get("clips") or 0)
            card["clips_without_subject"] = self.clips_without_subject
        return card


def card_settings(settings: dict) -> dict:
    """The source settings a data card records: the plain values among those the fingerprint covers
    (the simulator's size and zoom, a file source's decode settings and file count), by name. The
    identities of files and manifests (names, sizes and hashes) stay in the cache's meta.json: the
    fingerprint already stands for them."""
    return {k: settings[k] for k in sorted(settings)
            if isinstance(settings[k], (str, int, float, bool)) and not k.endswith("sha256")}


def say_skipped(cache: FrameCache) -> FrameCache:
    """Say how many files the cache left out (--on-error skip), and warn when its splits cannot be
    subject-disjoint, on every run that uses it, not only the one that built it; returns the cache."""
    n = int(cache.meta.get("skipped", 0))
    if n:
        print(f"{cache.meta['spec']} ({cache.meta['role']}): {n} file{'s' * (n != 1)} skipped, listed in "
              f"{cache.root / 'skipped.csv'}; the results record the count", file=sys.stderr, flush=True)
    warning = cache.subject_warning()
    if warning:
        print(f"warning: {warning}; the results record it and the leaderboard marks their scores",
              file=sys.stderr, flush=True)
    return cache


def fingerprint(source: Source, role: str) -> str:
    payload = {"format": CACHE_FORMAT, "kind": source.kind, "role": role, "resolution": source.resolution,
               "parts": source.fingerprint_parts(role)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def prepare(source: Source, role: str, cache_dir: str | Path | None = None, on_error: str = "fail",
            progress: bool = True, rebuild: bool = False, on_error_flag: str = "--on-error") -> FrameCache:
    """Return the cache of `source` for `role`, building it if it does not exist yet. `on_error_flag`
    is the option that sets `on_error` where the user runs it (named in the error of a bad file)."""
    if role not in ROLES:
        raise UserError(f"role must be one of {ROLES}, got {role!r}")
    if role not in source.roles:
        raise UserError(f"dataset {source.describe()!r} cannot be used for {role} "
                        f"(it serves: {', '.join(source.roles)})")
    if on_error not in ("fail", "skip"):
        raise UserError(f"{on_error_flag} must be 'fail' or 'skip', got {on_error!r}")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    fp = fingerprint(source, role)
    final = cache_dir / f"{source.kind}-{role}-{fp[:16]}"
    if (final / "meta.json").exists() and not rebuild:
        return FrameCache.load(final)
    ensure_writable(cache_dir, what="cache directory", flag="--cache-dir or set SSLBENCH_CACHE_DIR")
    _remove_stale_tmp(cache_dir, final.name)
    tmp = cache_dir / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _build(source, role, tmp, fp, on_error, progress, on_error_flag)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            free = shutil.disk_usage(cache_dir).free / 2**30
            raise UserError(f"out of disk space while building the frame cache in {cache_dir} "
                            f"({free:.1f} GiB free); free space or point --cache-dir / "
                            "SSLBENCH_CACHE_DIR elsewhere") from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FrameCache.load(final)


def _remove_stale_tmp(cache_dir: Path, name: str) -> None:
    for p in cache_dir.glob(f".tmp-{name}-*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)  # a live build of another process: leave it alone  # pragma: no mutate
        except (ValueError, ProcessLookupError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass


def _build(source: Source, role: str, tmp: Path, fp: str, on_error: str, progress: bool,
           on_error_flag: str = "--on-error") -> None:
    from tqdm.auto import tqdm

    res = source.resolution
    rows: list[tuple] = []
    skipped: list[Skipped] = []
    n = clips = without_subject = 0
    with open(tmp / "frames.u8", "wb") as out, \
            tqdm(desc=f"caching {source.describe()} ({role})", unit="frame", disable=not progress,
                 file=sys.stderr) as bar:
        for item in source.items(role):
            if isinstance(item, Skipped):
                if on_error == "fail":
                    raise DataError(item.path, f"{item.reason} (use {on_error_flag} skip to leave such files "
                                               "out and get a report)")
                skipped.append(item)
                bar.set_postfix(skipped=len(skipped))
                continue
            assert isinstance(item, Clip)
            if item.frames.shape[1:] != (res, res):
                raise ValueError(f"{source.kind}: clip {item.video_id} has frames {item.frames.shape[1:]}, "
                                 f"expected {(res, res)}")
            out.write(np.ascontiguousarray(item.frames).tobytes())
            t = item.frames.shape[0]
            labels = item.labels if item.labels is not None else np.full(t, UNLABELLED)
            fidx = item.frame_idx if item.frame_idx is not None else np.arange(t)
            for k in range(t):
                rows.append((item.video_id, item.subject_id, int(fidx[k]), int(labels[k]), item.split,
                             item.scanner))
            n += t
            clips += 1
            without_subject += not item.subject_known
            bar.update(t)
            kill_point("cache_clip")
    if n == 0:
        raise UserError(f"dataset {source.describe()!r} produced no frames for {role}"
                        + (f" ({len(skipped)} files skipped, see the reasons with {on_error_flag} fail)"
                           if skipped else " (is the folder empty?)"))
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    class_names = list(source.class_names(role))
    if role == "pretrain":
        index["split"] = index["split"].fillna("pretrain")
    else:
        if not class_names or (index["label"] < 0).all():
            raise UserError(f"dataset {source.describe()!r} has no labels, so it cannot be a downstream set")
        index["split"] = assign_subject_splits(index)
    index.to_csv(tmp / "index.csv", index=False)
    if skipped:
        with open(tmp / "skipped.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "reason"])
            w.writerows((s.path, s.reason) for s in skipped)
    meta = {
        "format": CACHE_FORMAT, "fingerprint": fp, "kind": source.kind, "spec": source.describe(),
        "role": role, "shape": [n, res, res], "class_names": class_names,
        "settings": source.fingerprint_parts(role), "skipped": len(skipped),
        "videos": int(index["video_id"].nunique()), "subjects": int(index["subject_id"].nunique()),
        "clips": clips, "clips_without_subject": without_subject,
    }
    # meta.json last: its presence is what marks a cache as complete.
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
