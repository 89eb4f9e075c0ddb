"""`hdf5:FILE` — one HDF5 dataset per video (key → T×H×W or T×H×W×C), for pretraining."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.file_source import ClipSource
from benchmark.data.sources.files import require_file, subject_from_pattern
from benchmark.data.sources.identity import file_identity
from benchmark.data.spec import register_source
from benchmark.errors import DataError


def list_datasets(path) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every dataset in the file, groups walked recursively, in sorted key order."""
    import h5py

    found: list[tuple[str, tuple[int, ...]]] = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: found.append((name, obj.shape))
                         if isinstance(obj, h5py.Dataset) else None)
    except OSError as exc:
        raise DataError(path, f"not a readable HDF5 file ({exc})") from exc
    return sorted(found)


@register_source("hdf5")
@dataclass(kw_only=True)
class Hdf5Source(ClipSource):
    """Each dataset is one video; its subject is the `subject_pattern` match on its key, else the
    top-level group it sits in, else the key itself (one subject per video)."""

    roles: tuple[str, ...] = ("pretrain",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._file = require_file(self.path, "hdf5", "expected an HDF5 file with one dataset per video")

    def fingerprint_parts(self, role: str) -> dict:
        return {**self.decode_settings(), "file": file_identity(self._file)}

    def class_names(self, role: str) -> list[str]:
        return []

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        datasets = list_datasets(self._file)
        if not datasets:
            raise DataError(self._file, "the file holds no datasets; expected one dataset per video "
                                        "(key → T×H×W or T×H×W×C)")
        tasks, paths = [], []
        for key, shape in datasets:
            where = f"{self._file}:{key}"
            if len(shape) not in (2, 3, 4):
                yield Skipped(where, f"dataset of shape {shape}: expected T×H×W or T×H×W×C")
                continue
            try:
                if self._pattern is not None:
                    subject = subject_from_pattern(self._pattern, key)
                else:
                    subject = key.split("/")[0]
            except ValueError as exc:
                yield Skipped(where, str(exc))
                continue
            tasks.append(self.task(str(self._file), key, subject, "hdf5", key=key,
                                   subject_known=self._pattern is not None or "/" in key))
            paths.append(where)
        yield from self.decode(tasks, paths, desc=f"reading {self._file.name}")
