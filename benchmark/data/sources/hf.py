"""`hf:NAME_OR_DIR` — a Hugging Face `datasets` image classification set, a downstream set.

DIR may be a dataset saved with `save_to_disk`, or a plain image folder (read with the `imagefolder`
builder: one sub-folder per class, optionally under train/ validation/ test/). NAME is a hub id,
used where the network allows; offline it fails with a message saying how to bring the data over.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.file_source import FileSource
from benchmark.data.sources.files import SPLIT_NAMES
from benchmark.data.sources.identity import files_identity
from benchmark.data.sources.parallel import decode_all
from benchmark.data.sources.pixels import prepare_frames
from benchmark.data.sources.readers import read_image
from benchmark.data.spec import register_source
from benchmark.errors import UserError

SUBJECT_COLUMNS = ("subject", "subject_id", "patient", "patient_id", "Patient_num")


@dataclass(frozen=True)
class HfImageTask:
    data: bytes | None
    path: str | None
    video_id: str
    subject_id: str
    label: int
    split: str | None
    resolution: int
    crop: str
    subject_known: bool = True  # False: no subject column, each image is its own subject


def decode_hf_image(task: HfImageTask) -> Clip:
    """Worker entry point: an encoded image (bytes or a file path) → a one-frame Clip."""
    import numpy as np

    raw, idx = read_image(io.BytesIO(task.data) if task.data is not None else task.path)
    frames = prepare_frames(raw, task.crop, task.resolution)
    return Clip(frames=frames, video_id=task.video_id, subject_id=task.subject_id,
                labels=np.full(1, task.label, np.int64), split=task.split, frame_idx=idx,
                path=task.path or task.video_id, subject_known=task.subject_known)


def _is_saved_dataset(root: Path) -> bool:
    return (root / "dataset_dict.json").is_file() or (root / "state.json").is_file()


@register_source("hf")
@dataclass(kw_only=True)
class HuggingFaceSource(FileSource):
    """Options: `label_column` (default: the first ClassLabel column, else 'label'), `-o image_column=`
    (default: the first Image column), `-o subject_column=` (default: subject/patient columns if
    present, else each image is its own subject), `-o revision=` and `-o hf_cache_dir=` for hub ids."""

    label_column: str | None = None
    image_column: str | None = None
    subject_column: str | None = None
    revision: str | None = None
    hf_cache_dir: str | None = None
    roles: tuple[str, ...] = ("downstream",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._local = Path(self.path).expanduser()
        self._data = None

    def _is_local(self) -> bool:
        return self._local.is_dir()

    def _load(self):
        """The dataset as {split name: Dataset}."""
        if self._data is not None:
            return self._data
        import datasets

        if self._is_local():
            if _is_saved_dataset(self._local):
                loaded = datasets.load_from_disk(str(self._local))
            else:
                loaded = self._guarded_load(datasets.load_dataset, "imagefolder", data_dir=str(self._local),
                                            cache_dir=self.hf_cache_dir)
        elif self.path.startswith((".", "/", "~")) or Path(self.path).suffix:
            raise UserError(f"hf:{self.path}: no such folder; give a local dataset folder or a hub id "
                            "such as `user/dataset`")
        else:
            self._check_hub()
            loaded = self._guarded_load(datasets.load_dataset, self.path, revision=self.revision,
                                        cache_dir=self.hf_cache_dir)
        self._data = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        if not self._data or all(len(d) == 0 for d in self._data.values()):
            raise UserError(f"hf:{self.path}: the dataset has no rows")
        return self._data

    def _offline_message(self, exc: BaseException) -> UserError:
        return UserError(
            f"hf:{self.path}: cannot reach the Hugging Face hub ({type(exc).__name__}: {exc}). On a machine "
            f"with network access run `python -c \"import datasets; datasets.load_dataset('{self.path}')"
            ".save_to_disk('DIR')\"`, copy DIR here and use `--dataset hf:DIR`")

    def _check_hub(self) -> None:
        # One metadata request fails in well under a second when offline; load_dataset would retry for ~25 s.
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

        try:
            HfApi().dataset_info(self.path, revision=self.revision)
        except GatedRepoError as exc:
            raise UserError(f"hf:{self.path}: the dataset is gated; accept its terms on the hub and log in "
                            "with `hf auth login`") from exc
        except RepositoryNotFoundError as exc:
            raise UserError(f"hf:{self.path}: no such dataset on the hub (nor a local folder of that name)") \
                from exc
        except HFValidationError as exc:
            raise UserError(f"hf:{self.path}: not a valid hub id nor an existing folder ({exc})") from exc
        except Exception as exc:  # connection refused, DNS failure, offline mode, timeouts: all mean no hub
            raise self._offline_message(exc) from exc

    def _guarded_load(self, load, *args, **kwargs):
        try:
            return load(*args, **kwargs)
        except (ConnectionError, TimeoutError) as exc:
            raise self._offline_message(exc) from exc

    def _columns(self, dataset) -> tuple[str, str, str | None]:
        import datasets

        features = dataset.features
        names = list(features)
        image = self.image_column or next((n for n in names if isinstance(features[n], datasets.Image)), None)
        if image is None or image not in features:
            raise UserError(f"hf:{self.path}: no image column (columns: {', '.join(names)}); "
                            "name it with -o image_column=NAME")
        label = self.label_column or next((n for n in names if isinstance(features[n], datasets.ClassLabel)),
                                          "label" if "label" in features else None)
        if label is None or label not in features:
            which = f"column {self.label_column!r}" if self.label_column else "ClassLabel column nor 'label'"
            raise UserError(f"hf:{self.path}: no label {which} (columns: {', '.join(names)}); name it with "
                            "--label-column NAME")
        subject = self.subject_column or next((n for n in SUBJECT_COLUMNS if n in features), None)
        if subject is not None and subject not in features:
            raise UserError(f"hf:{self.path}: no subject column {subject!r} (columns: {', '.join(names)})")
        return image, label, subject

    def fingerprint_parts(self, role: str) -> dict:
        settings = {"label_column": self.label_column, "image_column": self.image_column,
                    "subject_column": self.subject_column, **self.decode_settings()}
        if self._is_local():
            files = sorted(p.relative_to(self._local).as_posix() for p in self._local.rglob("*") if p.is_file())
            return {**settings, **files_identity(self._local, files)}
        return {**settings, "hub_id": self.path, "revision": self.revision}

    def class_names(self, role: str) -> list[str]:
        import datasets

        data = self._load()
        first = next(iter(data.values()))
        _, label, _ = self._columns(first)
        feature = first.features[label]
        if isinstance(feature, datasets.ClassLabel):
            return list(feature.names)
        return sorted({str(v) for d in data.values() for v in d[label]})

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        import datasets

        data = self._load()
        unknown = [name for name in data if name not in SPLIT_NAMES]
        if len(data) > 1 and unknown:
            raise UserError(f"hf:{self.path}: split(s) {', '.join(unknown)} are not train/validation/test; "
                            "keep only those (or a single split, which is then divided by subject)")
        classes = self.class_names(role)
        index = {name: k for k, name in enumerate(classes)}
        tasks, paths = [], []
        for split_name, dataset in data.items():
            image, label, subject = self._columns(dataset)
            is_class_label = isinstance(dataset.features[label], datasets.ClassLabel)
            raw = dataset.cast_column(image, datasets.Image(decode=False))
            split = SPLIT_NAMES[split_name] if len(data) > 1 else None
            for i, row in enumerate(raw):
                encoded = row[image] or {}
                video_id = f"{split_name}/{i:07d}"
                where = encoded.get("path") or video_id
                if row[label] is None or (is_class_label and row[label] < 0):
                    yield Skipped(where, f"row {i} of split {split_name!r} has no label")
                    continue
                k = int(row[label]) if is_class_label else index[str(row[label])]
                tasks.append(HfImageTask(data=encoded.get("bytes"), path=encoded.get("path"), video_id=video_id,
                                         subject_id=str(row[subject]) if subject else video_id, label=k,
                                         split=split, resolution=self.resolution, crop=self.crop,
                                         subject_known=subject is not None))
                paths.append(where)
        yield from decode_all(decode_hf_image, tasks, paths, desc=f"decoding {self.path}", workers=self.workers)
