"""`imagefolder:DIR` — one sub-folder per class (optionally under train/ val/ test/), a downstream set."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.file_source import FileSource
from benchmark.data.sources.files import (
    IMAGE_EXTENSIONS,
    SPLIT_NAMES,
    list_files,
    require_dir,
    subject_from_pattern,
)
from benchmark.data.sources.identity import files_identity
from benchmark.data.spec import register_source
from benchmark.errors import UserError


@register_source("imagefolder")
@dataclass(kw_only=True)
class ImageFolderSource(FileSource):
    """`DIR/<class>/…/image.png`, or `DIR/<split>/<class>/…` with split folders train, val, test.
    Subject: the `subject_pattern` match on the path, else the folder below the class folder
    (`<class>/<subject>/image.png`), else each image is its own subject."""

    subject_pattern: str | None = None
    roles: tuple[str, ...] = ("downstream",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._root = require_dir(self.path, "imagefolder", "expected a folder with one sub-folder per class")

    def _entries(self) -> list[tuple[str, str | None, str, str]]:
        """(relative path, split, class, path below the class folder) of every image."""
        files = list_files(self._root, IMAGE_EXTENSIONS)
        tops = {Path(f).parts[0] for f in files if len(Path(f).parts) > 1}
        with_splits = bool(tops) and all(t.lower() in SPLIT_NAMES for t in tops)
        depth = 2 if with_splits else 1
        entries = []
        for rel in files:
            parts = Path(rel).parts
            if len(parts) <= depth:
                continue  # a file beside the class folders belongs to no class
            split = SPLIT_NAMES[parts[0].lower()] if with_splits else None
            entries.append((rel, split, parts[depth - 1], "/".join(parts[depth:])))
        if not entries:
            layout = "DIR/<class>/<image>" + (" under train/ val/ test/" if with_splits else "")
            raise UserError(f"imagefolder:{self.path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in class "
                            f"sub-folders of {self._root}; expected {layout}")
        return entries

    def fingerprint_parts(self, role: str) -> dict:
        return {**self.decode_settings(), **files_identity(self._root, [e[0] for e in self._entries()])}

    def class_names(self, role: str) -> list[str]:
        return sorted({e[2] for e in self._entries()})

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        classes = {name: k for k, name in enumerate(self.class_names(role))}
        tasks, paths = [], []
        for rel, split, cls, below in self._entries():
            path = str(self._root / rel)
            try:
                below_parts = below.split("/")
                known = self._pattern is not None or len(below_parts) > 1
                if self._pattern is not None:
                    subject = subject_from_pattern(self._pattern, rel)
                else:
                    subject = below_parts[0] if known else str(Path(rel).with_suffix(""))
            except ValueError as exc:
                yield Skipped(path, str(exc))
                continue
            tasks.append(self.task(path, rel, subject, "image", label=classes[cls], split=split, subject_known=known))
            paths.append(path)
        yield from self.decode(tasks, paths, desc=f"decoding {self.path}")
