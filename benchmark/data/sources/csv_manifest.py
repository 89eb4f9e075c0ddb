"""`csv:FILE` — a label manifest with columns path,label[,subject][,split][,scanner], paths relative to the file.

The same manifest format labels DICOM folders (`dicom:DIR --labels FILE`). Each row is one image,
DICOM file or video (every kept frame of a video gets the row's label).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.file_source import ClipSource, FileSource
from benchmark.data.sources.files import SPLIT_NAMES, require_file, subject_from_pattern
from benchmark.data.sources.identity import file_identity, files_identity
from benchmark.data.sources.readers import reader_for
from benchmark.data.spec import register_source
from benchmark.errors import DataError, UserError


def missing_columns_message(path: Path, found: list[str], missing: list[str], expected: str) -> str:
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, found, n=1, cutoff=0.6)
        if close:
            hints.append(f"{close[0]!r} → {name!r}?")
    return (f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}; "
            f"found {', '.join(repr(f) for f in found) or 'no columns'}; expected {expected}"
            + (f" (did you mean {'; '.join(hints)})" if hints else "")
            + f" — fix the header of {path.name}")


def class_order(values: list[str]) -> list[str]:
    """Sorted class names; numerically when every name is an integer (so '10' comes after '9')."""
    uniq = sorted(set(values))
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return uniq


@dataclass
class ManifestRow:
    rel: str  # as written in the manifest
    path: Path  # resolved
    label: str
    subject: str | None
    split: str | None
    line: int  # line number in the file, for messages
    scanner: str = ""  # the machine that acquired it ("" = unknown or no scanner column)


def read_manifest(path: Path, label_column: str = "label", base: Path | None = None) -> list[ManifestRow]:
    """Read and validate a manifest (paths relative to `base`, by default the manifest's folder);
    structural problems raise DataError naming the file and the fix."""
    base = base or path.parent
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = f.readline()
        sep = max(",;\t", key=header.count)  # comma, semicolon (European Excel) or tab, from the header
        table = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(path, f"not a readable CSV manifest ({exc})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    lower = {c.lower(): c for c in table.columns}
    need = ["path", label_column.lower()]
    missing = [n for n in need if n not in lower]
    if missing:
        raise DataError(path, missing_columns_message(path, list(table.columns), missing,
                                                      f"path,{label_column}[,subject][,split][,scanner]"))
    if table.empty:
        raise DataError(path, "the manifest has a header but no rows")
    col = {name: lower.get(name) for name in ("path", "subject", "split", "scanner")}
    col["label"] = lower[label_column.lower()]
    rows, bad_labels, bad_splits = [], [], []
    for k, rec in enumerate(table.to_dict("records")):
        line = k + 2  # 1-based, after the header
        rel = rec[col["path"]].strip()
        label = rec[col["label"]].strip()
        if not label:
            bad_labels.append(line)
        split = rec[col["split"]].strip().lower() if col["split"] else ""
        if split and split not in SPLIT_NAMES:
            bad_splits.append(f"line {line}: {split!r}")
        subject = rec[col["subject"]].strip() if col["subject"] else ""
        scanner = rec[col["scanner"]].strip() if col["scanner"] else ""
        rows.append(ManifestRow(rel=rel, path=(base / rel).resolve() if rel else base,
                                label=label, subject=subject or None, split=SPLIT_NAMES.get(split), line=line,
                                scanner=scanner))
    if bad_labels:
        raise DataError(path, f"empty {col['label']!r} on line(s) {', '.join(map(str, bad_labels[:10]))}"
                              f"{' …' if len(bad_labels) > 10 else ''}; every row needs a class")
    if bad_splits:
        raise DataError(path, f"unknown split value(s) {'; '.join(bad_splits[:5])}; use train, val or test "
                              "(or leave the cell empty to have the split assigned by subject)")
    empty_paths = [r.line for r in rows if not r.rel]
    if empty_paths:
        raise DataError(path, f"empty path on line(s) {', '.join(map(str, empty_paths[:10]))}")
    return rows


def manifest_items(manifest: Path, rows: list[ManifestRow], classes: list[str], source: FileSource,
                   pattern, desc: str) -> Iterator[Clip | Skipped]:
    """Missing files first (so `--on-error fail` stops before any decoding), then the decoded rows."""
    index = {name: k for k, name in enumerate(classes)}
    tasks, paths = [], []
    for row in rows:
        shown = str(row.path)
        if not row.path.is_file():
            yield Skipped(shown, f"listed in {manifest.name} (line {row.line}) but the file does not exist")
            continue
        try:
            reader = reader_for(row.rel)
            subject = row.subject or (subject_from_pattern(pattern, row.rel) if pattern else None)
        except ValueError as exc:
            yield Skipped(shown, str(exc))
            continue
        tasks.append(source.task(shown, row.rel, subject or str(Path(row.rel).with_suffix("")), reader,
                                 label=index[row.label], split=row.split, subject_from_patient_id=subject is None,
                                 subject_known=subject is not None, scanner=row.scanner))
        paths.append(shown)
    yield from source.decode(tasks, paths, desc=desc)


def manifest_identity(manifest: Path, rows: list[ManifestRow]) -> dict:
    """The manifest's content and its files' identity; a manifest with scanners says so, so a cache built
    before scanners were recorded rebuilds (one without keeps its fingerprint)."""
    scanners = {"scanner_column": True} if any(r.scanner for r in rows) else {}
    return {"manifest": file_identity(manifest), **scanners,
            **files_identity(manifest.parent, [r.rel for r in rows], [r.path for r in rows])}


@register_source("csv")
@dataclass(kw_only=True)
class CsvManifestSource(ClipSource):
    """Labelled images (or DICOMs/videos) listed in a CSV. Without a subject column or
    `subject_pattern`, a DICOM's PatientID is used, else each file is its own subject."""

    label_column: str = "label"
    crop: str = "none"
    roles: tuple[str, ...] = ("downstream",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._file = require_file(self.path, "csv", "expected a CSV manifest with columns "
                                  "path,label[,subject][,split][,scanner]")
        self._rows: list[ManifestRow] | None = None

    def _manifest(self) -> list[ManifestRow]:
        if self._rows is None:
            self._rows = read_manifest(self._file, self.label_column)
        return self._rows

    def fingerprint_parts(self, role: str) -> dict:
        return {"label_column": self.label_column, **self.decode_settings(),
                **manifest_identity(self._file, self._manifest())}

    def class_names(self, role: str) -> list[str]:
        return class_order([r.label for r in self._manifest()])

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        if role not in self.roles:
            raise UserError(f"csv:{self.path} is a labelled downstream set; it cannot serve {role}")
        yield from manifest_items(self._file, self._manifest(), self.class_names(role), self, self._pattern,
                                  desc=f"decoding {self._file.name}")
