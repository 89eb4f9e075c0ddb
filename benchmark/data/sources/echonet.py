"""`echonet:DIR` — the EchoNet-Dynamic layout (`FileList.csv` + `Videos/*.avi`), for pretraining.

Its `Split` column is honoured: by default only TRAIN videos feed pretraining, so that a model
evaluated on EchoNet's own VAL/TEST videos never saw them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.csv_manifest import missing_columns_message
from benchmark.data.sources.file_source import ClipSource
from benchmark.data.sources.files import require_dir, subject_from_pattern
from benchmark.data.sources.identity import file_identity, files_identity
from benchmark.data.spec import register_source
from benchmark.errors import DataError, UserError

REQUIRED_COLUMNS = ["FileName", "Split"]
SPLITS = ("TRAIN", "VAL", "TEST")


@register_source("echonet")
@dataclass(kw_only=True)
class EchoNetSource(ClipSource):
    """One video per patient, so each video is its own subject (unless `subject_pattern` says
    otherwise). `splits`: which values of the Split column to use, comma-separated."""

    splits: str = "TRAIN"
    crop: str = "none"  # the published videos are already cropped to the sector
    roles: tuple[str, ...] = ("pretrain",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._root = require_dir(self.path, "echonet", "expected the EchoNet-Dynamic folder holding "
                                 "FileList.csv and Videos/")
        self._splits = [s.strip().upper() for s in str(self.splits).split(",") if s.strip()]
        bad = [s for s in self._splits if s not in SPLITS]
        if bad or not self._splits:
            raise UserError(f"-o splits={self.splits!r}: use one or more of {', '.join(SPLITS)}, "
                            "comma-separated (e.g. -o splits=TRAIN,VAL)")

    def _filelist(self) -> pd.DataFrame:
        path = self._root / "FileList.csv"
        if not path.is_file():
            raise DataError(path, "missing; an EchoNet-Dynamic folder holds FileList.csv and Videos/*.avi")
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(path, f"not a readable CSV ({exc})") from exc
        table.columns = [str(c).strip() for c in table.columns]
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise DataError(path, missing_columns_message(path, list(table.columns), missing,
                                                          "FileName,Split (plus EF, FPS, NumberOfFrames, …)"))
        table["FileName"] = table["FileName"].str.strip()
        table["Split"] = table["Split"].str.strip().str.upper()
        chosen = table[table["Split"].isin(self._splits)]
        if chosen.empty:
            raise DataError(path, f"no rows with Split in {', '.join(self._splits)} (found: "
                                  f"{', '.join(sorted(table['Split'].unique())) or 'none'})")
        return chosen.sort_values("FileName", kind="stable")

    def _video_path(self, name: str) -> Path:
        # FileList.csv of the public release names videos without the extension; later copies add it.
        return self._root / "Videos" / (name if name.lower().endswith(".avi") else f"{name}.avi")

    def fingerprint_parts(self, role: str) -> dict:
        names = self._filelist()["FileName"].tolist()
        rel = [self._video_path(n).relative_to(self._root).as_posix() for n in names]
        return {"splits": self._splits, **self.decode_settings(), "filelist": file_identity(self._root / "FileList.csv"),
                **files_identity(self._root, rel)}

    def class_names(self, role: str) -> list[str]:
        return []

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        tasks, paths = [], []
        for name in self._filelist()["FileName"]:
            video = self._video_path(name)
            if not video.is_file():
                yield Skipped(str(video), "listed in FileList.csv but missing from Videos/")
                continue
            video_id = video.stem
            try:
                subject = subject_from_pattern(self._pattern, video_id) if self._pattern else video_id
            except ValueError as exc:
                yield Skipped(str(video), str(exc))
                continue
            tasks.append(self.task(str(video), video_id, subject, "video"))
            paths.append(str(video))
        yield from self.decode(tasks, paths, desc=f"decoding {self.path}")
