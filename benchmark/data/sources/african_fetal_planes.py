"""`african_fetal_planes:DIR` — the African fetal ultrasound planes (Sendra-Balcells et al., Sci Rep 13,
2728, 2023; Zenodo 7540448), a labelled downstream set from five countries.

It is read in either layout it is published in:
- split folders (the copy in github.com/13204942/FU-LoRA, what `sslbench data download
  african_fetal_planes` fetches): `african_train/African_train.csv` + its PNGs and
  `african_test/African_test.csv` + its PNGs, columns `Patient_num,Plane,Train,Center,Image_name`;
- the Zenodo archive: `African_planes_database.csv` (the same columns, `Filename` for `Image_name`) and
  one folder of PNGs per country (`Algeria/patient001_DZA_plane0.png`).
Names are given without `.png`. Classes come from `Plane` (4). `Train` (1/0) gives train/test; the
validation set is carved out of train by subject. Patient numbers restart in each country, so the
subject is country and patient (`DZA-007`). `Center`, the country, is each image's scanner: each site is
its own imaging setting, so the cross-scanner protocol holds one country out.
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

SPLIT_CSVS = ("african_train/African_train.csv", "african_test/African_test.csv")
ZENODO_CSV = "African_planes_database.csv"
COLUMNS = ["Patient_num", "Plane", "Train", "Center", "Image_name"]
LABEL_COLUMN = "Plane"
SCANNER_COLUMN = "Center"
# The codes the data set's own image names use (patient007_DZA_plane2); another centre keeps its name.
COUNTRY_CODES = {"Algeria": "DZA", "Egypt": "EGY", "Ghana": "GHA", "Malawi": "MWI", "Uganda": "UGA"}


def subject_id(center: str, patient: str) -> str:
    """Country and patient, e.g. ('Algeria', '7') → 'DZA-007': patient numbers restart in each country."""
    number = f"{int(patient):03d}" if patient.isdigit() else patient
    return f"{COUNTRY_CODES.get(center, center)}-{number}"


@register_source("african_fetal_planes")
@dataclass(kw_only=True)
class AfricanFetalPlanesSource(FileSource):
    roles: tuple[str, ...] = ("downstream",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._root = require_dir(self.path, "african_fetal_planes",
                                 f"expected the folder holding {' and '.join(SPLIT_CSVS)}, or {ZENODO_CSV} "
                                 "and one folder per country")
        self._table: pd.DataFrame | None = None

    def _csvs(self) -> list[Path]:
        """The label tables of whichever published layout the folder has."""
        if (self._root / ZENODO_CSV).is_file():
            return [self._root / ZENODO_CSV]
        found = [self._root / rel for rel in SPLIT_CSVS if (self._root / rel).is_file()]
        if len(found) == len(SPLIT_CSVS):
            return found
        missing = [rel for rel in SPLIT_CSVS if not (self._root / rel).is_file()]
        raise UserError(f"african_fetal_planes:{self.path}: no {ZENODO_CSV} and no {', '.join(missing)} in "
                        f"{self._root}; point the spec at the folder that holds african_train/ and african_test/ "
                        f"(or {ZENODO_CSV}), e.g. the folder `sslbench data download african_fetal_planes` printed")

    def _read(self, path: Path) -> pd.DataFrame:
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(path, f"not a readable comma-separated CSV ({exc})") from exc
        found = list(table.columns)
        table.columns = [str(c).strip() for c in table.columns]
        table = table.rename(columns={"Filename": "Image_name"})  # the Zenodo table's name for it
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise DataError(path, missing_columns_message(path, found, missing, ",".join(COLUMNS)))
        table = table[COLUMNS].apply(lambda col: col.str.strip())
        bad = table.index[~table["Train"].isin(["0", "1"])]
        if len(bad):
            raise DataError(path, f"column 'Train' must be 1 (train) or 0 (test); line {bad[0] + 2} has "
                                  f"{table.loc[bad[0], 'Train']!r}")
        empty = table.index[(table[["Patient_num", "Center", "Image_name"]] == "").any(axis=1)]
        if len(empty):
            raise DataError(path, f"line {empty[0] + 2} has an empty Patient_num, Center or Image_name; every "
                                  "image needs its patient and country")
        # Zenodo: the images sit in a folder per country; split folders: beside their table.
        folder = table["Center"] if path.name == ZENODO_CSV else pd.Series("", index=table.index)
        return table.assign(table=path.relative_to(self._root).as_posix(),
                            rel=[(Path(path.parent.relative_to(self._root)) / f / self._file_name(n)).as_posix()
                                 for f, n in zip(folder, table["Image_name"], strict=True)])

    @staticmethod
    def _file_name(name: str) -> str:
        return name if name.lower().endswith(IMAGE_EXTENSIONS) else f"{name}.png"

    def _rows(self) -> pd.DataFrame:
        if self._table is not None:
            return self._table
        csvs = self._csvs()
        table = pd.concat([self._read(p) for p in csvs], ignore_index=True)
        table = table[table[LABEL_COLUMN] != ""]
        if table.empty:
            raise DataError(csvs[0], f"no labelled rows (column {LABEL_COLUMN!r} is empty everywhere)")
        table = table.assign(subject=[subject_id(c, p) for c, p in zip(table["Center"], table["Patient_num"],
                                                                        strict=True)])
        split = table.groupby("subject")["Train"].nunique()
        mixed = split.index[split > 1].tolist()
        if mixed:
            print(f"warning: african_fetal_planes:{self.path}: patient(s) {', '.join(mixed[:5])} appear in both "
                  "train and test", file=sys.stderr)
        self._table = table
        return table

    def fingerprint_parts(self, role: str) -> dict:
        rows = self._rows()
        return {"scanner_column": SCANNER_COLUMN, **self.decode_settings(),
                "csv": [file_identity(p) for p in self._csvs()],
                **files_identity(self._root, rows["rel"].tolist())}

    def class_names(self, role: str) -> list[str]:
        return sorted(self._rows()[LABEL_COLUMN].unique())

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        if role not in self.roles:
            raise UserError(f"african_fetal_planes:{self.path} is a labelled downstream set; it cannot serve {role}")
        classes = {name: k for k, name in enumerate(self.class_names(role))}
        tasks, paths = [], []
        for rec in self._rows().to_dict("records"):
            image = self._root / rec["rel"]
            if not image.is_file():
                yield Skipped(str(image), f"listed in {rec['table']} but missing")
                continue
            tasks.append(self.task(str(image), rec["Image_name"], rec["subject"], "image",
                                   label=classes[rec[LABEL_COLUMN]],
                                   split="train" if rec["Train"] == "1" else "test",
                                   scanner=rec[SCANNER_COLUMN]))
            paths.append(str(image))
        yield from self.decode(tasks, paths, desc=f"decoding {self.path}")
