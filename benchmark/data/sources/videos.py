"""`videos:DIR` — a folder tree of video clips (.mp4, .avi, .mov, .mkv, .gif, …) for pretraining."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from benchmark.data.source import Clip, Skipped
from benchmark.data.sources.file_source import ClipSource
from benchmark.data.sources.files import VIDEO_EXTENSIONS, list_files, require_dir
from benchmark.data.sources.identity import files_identity
from benchmark.data.spec import register_source
from benchmark.errors import UserError


@register_source("videos")
@dataclass(kw_only=True)
class VideoFolderSource(ClipSource):
    """Every video under `path` (recursively) is one clip; its subject is the `subject_pattern` match
    on its relative path, else its first sub-folder, else its file name."""

    roles: tuple[str, ...] = ("pretrain",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._root = require_dir(self.path, "videos", "expected a folder of video clips")

    def _files(self) -> list[str]:
        files = list_files(self._root, VIDEO_EXTENSIONS)
        if not files:
            raise UserError(f"videos:{self.path}: no video files ({', '.join(VIDEO_EXTENSIONS)}) under "
                            f"{self._root}; point the spec at the folder that holds the clips")
        return files

    def fingerprint_parts(self, role: str) -> dict:
        return {**self.decode_settings(), **files_identity(self._root, self._files())}

    def class_names(self, role: str) -> list[str]:
        return []

    def items(self, role: str) -> Iterator[Clip | Skipped]:
        yield from self.decode_files(self._root, self._files(), "video")
