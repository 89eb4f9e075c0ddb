"""`dicom:DIR` — DICOM files (multi-frame cines and single frames, compressed or not) for pretraining,
and for downstream when a label manifest (`--labels FILE`, the `csv:` format with paths relative to
DIR) is given."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.csv_manifest import (
    ManifestRow,
    class_order,
    manifest_identity,
    manifest_items,
    read_manifest,
)
from benchmark.data.sources.file_source import ClipSource
from benchmark.data.sources.files import DICOM_EXTENSIONS, require_dir, require_file
from benchmark.data.sources.identity import files_identity
from benchmark.data.spec import register_source
from benchmark.errors import UserError


def is_dicom(path: Path) -> bool:
    """By extension, or for files without one (as DICOM files often are) by the 'DICM' magic."""
    suffix = path.suffix.lower()
    if suffix in DICOM_EXTENSIONS:
        return True
    if suffix or path.name == "DICOMDIR":
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def list_dicom_files(root: Path) -> list[str]:
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if is_dicom(p):
            found.append(rel.as_posix())
    return sorted(found)


@register_source("dicom")
@dataclass(kw_only=True)
class DicomSource(ClipSource):
    """Subject: `subject_pattern` on the relative path, else the file's PatientID, else its first
    sub-folder, else its name. With `labels`, the manifest's subject column comes first."""

    labels: str | None = None
    roles: tuple[str, ...] = ("pretrain",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._root = require_dir(self.path, "dicom", "expected a folder of DICOM files")
        self._manifest_path = require_file(self.labels, "dicom --labels",
                                           "expected a CSV manifest path,label[,subject][,split] with paths relative to the DICOM folder") \
            if self.labels else None
        self._rows: list[ManifestRow] | None = None
        self.roles = ("pretrain", "downstream") if self.labels else ("pretrain",)

    def _files(self) -> list[str]:
        files = list_dicom_files(self._root)
        if not files:
            raise UserError(f"dicom:{self.path}: no DICOM files (*.dcm, *.dicom, or files without extension "
                            f"that start with the DICM marker) under {self._root}")
        return files

    def _manifest(self) -> list[ManifestRow]:
        if self._manifest_path is None:
            raise UserError(f"dicom:{self.path} has no labels; pass --labels FILE (a CSV with columns "
                            "path,label[,subject][,split], paths relative to it) to use it downstream")
        if self._rows is None:
            self._rows = read_manifest(self._manifest_path, base=self._root)
        return self._rows

    def fingerprint_parts(self, role: str) -> dict:
        settings = self.decode_settings()
        if role == "downstream":
            return {**settings, **manifest_identity(self._manifest_path, self._manifest())}
        return {**settings, **files_identity(self._root, self._files())}

    def class_names(self, role: str) -> list[str]:
        return class_order([r.label for r in self._manifest()]) if role == "downstream" else []

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        if role == "downstream":
            yield from manifest_items(self._manifest_path, self._manifest(), self.class_names(role), self,
                                      self._pattern, desc=f"decoding {self._manifest_path.name}")
            return
        yield from self.decode_files(self._root, self._files(), "dicom", subject_from_patient_id=self._pattern is None)
