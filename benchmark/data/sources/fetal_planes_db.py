"""`fetal_planes_db:DIR` — FETAL_PLANES_DB (Zenodo 3904280), a labelled downstream set.

Layout: `FETAL_PLANES_DB_data.csv` (semicolon-separated; columns
`Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train ` — the last one with a trailing
space) and `Images/<Image_name>.png`. Classes come from `Plane` (6), or from `Brain_plane` with
`--label-column Brain_plane` (then only the brain images, the others being 'Not A Brain'). The
`Train ` column (1/0) gives train/test; patients are the subjects, so the validation set carved out
of train is patient-disjoint too. `US_Machine` is each image's scanner (the cross-scanner protocol
holds one machine out).
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.csv_manifest import missing_columns_message
from benchmark.data.sources.file_source import FileSource
from benchmark.data.sources.files import IMAGE_EXTENSIONS, require_dir
from benchmark.data.sources.identity import file_identity, files_identity
from benchmark.data.spec import register_source
from benchmark.errors import DataError, UserError

CSV_NAME = "FETAL_PLANES_DB_data.csv"
SCANNER_COLUMN = "US_Machine"
COLUMNS = ["Image_name", "Patient_num", "Plane", "Brain_plane", "Operator", "US_Machine", "Train"]
LABEL_COLUMNS = ("Plane", "Brain_plane")
NOT_A_BRAIN = "Not A Brain"


@register_source("fetal_planes_db")
@dataclass(kw_only=True)
class FetalPlanesDbSource(FileSource):
    label_column: str = "Plane"
    roles: tuple[str, ...] = ("downstream",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._root = require_dir(self.path, "fetal_planes_db", f"expected the folder holding {CSV_NAME} "
                                 "and Images/")
        if self.label_column not in LABEL_COLUMNS:
            raise UserError(f"--label-column {self.label_column!r} does not apply to FETAL_PLANES_DB: "
                            f"use {' or '.join(LABEL_COLUMNS)}")
        self._table: pd.DataFrame | None = None

    def _rows(self) -> pd.DataFrame:
        if self._table is not None:
            return self._table
        path = self._root / CSV_NAME
        if not path.is_file():
            raise DataError(path, f"missing; FETAL_PLANES_DB ships {CSV_NAME} beside the Images/ folder")
        try:
            table = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(path, f"not a readable semicolon-separated CSV ({exc})") from exc
        found = list(table.columns)
        table.columns = [str(c).strip() for c in table.columns]  # the release spells the last one 'Train '
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise DataError(path, missing_columns_message(path, found, missing, ";".join(COLUMNS[:-1])
                                                          + ";Train  (semicolon-separated)"))
        table = table.apply(lambda col: col.str.strip())
        bad = table.index[~table["Train"].isin(["0", "1"])]
        if len(bad):
            raise DataError(path, f"column 'Train ' must be 1 (train) or 0 (test); line {bad[0] + 2} has "
                                  f"{table.loc[bad[0], 'Train']!r}")
        if self.label_column == "Brain_plane":
            table = table[table["Brain_plane"] != NOT_A_BRAIN]
        table = table[table[self.label_column] != ""]
        if table.empty:
            raise DataError(path, f"no labelled rows in column {self.label_column!r}")
        split = table.groupby("Patient_num")["Train"].nunique()
        mixed = split.index[split > 1].tolist()
        if mixed:
            print(f"warning: {path.name}: patient(s) {', '.join(mixed[:5])} appear in both train and test",
                  file=sys.stderr)
        self._table = table
        return table

    def _image(self, name: str) -> Path:
        return self._root / "Images" / (name if name.lower().endswith(IMAGE_EXTENSIONS) else f"{name}.png")

    def fingerprint_parts(self, role: str) -> dict:
        names = self._rows()["Image_name"]
        # The scanner column in the fingerprint: caches built before scanners were recorded rebuild.
        return {"label_column": self.label_column, "scanner_column": SCANNER_COLUMN, **self.decode_settings(),
                "csv": file_identity(self._root / CSV_NAME),
                **files_identity(self._root, [self._image(n).relative_to(self._root).as_posix() for n in names])}

    def class_names(self, role: str) -> list[str]:
        return sorted(self._rows()[self.label_column].unique())

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        classes = {name: k for k, name in enumerate(self.class_names(role))}
        tasks, paths = [], []
        for rec in self._rows().to_dict("records"):
            image = self._image(rec["Image_name"])
            if not image.is_file():
                yield Skipped(str(image), f"listed in {CSV_NAME} but missing from Images/")
                continue
            tasks.append(self.task(str(image), rec["Image_name"], rec["Patient_num"], "image",
                                   label=classes[rec[self.label_column]],
                                   split="train" if rec["Train"] == "1" else "test",
                                   scanner=rec[SCANNER_COLUMN]))
            paths.append(str(image))
        yield from self.decode(tasks, paths, desc=f"decoding {self.path}")
