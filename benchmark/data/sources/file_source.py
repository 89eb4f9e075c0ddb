"""The shared base of the file-based sources: the settings they have in common, their checks, and
the parallel decode of their files.

`FileSource`: files under `path`, a `crop` and the number of decoding `workers`. `ClipSource` adds
what sources of clips have: a frame `stride`, `max_frames` per clip and a `subject_pattern`. A
source declares only the settings it uses (each is a flag that applies to it, and any other is
refused by the spec parser); the checks and the fingerprint's settings look at those it has.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmark.data.source import Clip, Skipped, Source
from benchmark.data.sources.files import compile_subject_pattern, names_subject, subject_of
from benchmark.data.sources.parallel import decode_all
from benchmark.data.sources.readers import FileTask, decode_file
from benchmark.errors import UserError

CROPS = ("auto", "none")
# The settings that change what a clip becomes in the cache, where a source has them.
DECODE_SETTINGS = ("stride", "max_frames", "crop", "subject_pattern")


@dataclass(kw_only=True)
class FileSource(Source):
    """A source read from files under `path` (a folder, or a file such as a manifest)."""

    path: str
    crop: str = "none"
    workers: int = 0  # 0: every core this process may use

    def __post_init__(self) -> None:
        check_settings(self)
        self._pattern = compile_subject_pattern(getattr(self, "subject_pattern", None))

    def decode_settings(self) -> dict:
        """The decode settings this source has, as its fingerprint records them."""
        return {name: getattr(self, name) for name in DECODE_SETTINGS if hasattr(self, name)}

    def task(self, path: str, video_id: str, subject_id: str, reader: str, **settings) -> FileTask:
        """What a worker needs to decode one file with this source's settings."""
        return FileTask(path=path, video_id=video_id, subject_id=subject_id, resolution=self.resolution,
                        crop=self.crop, reader=reader, stride=getattr(self, "stride", 1),
                        max_frames=getattr(self, "max_frames", None), **settings)

    def decode(self, tasks: list[FileTask], paths: list[str], desc: str) -> Iterator[Clip | Skipped]:
        """Decode `tasks` on the source's workers, in order (`paths[i]` names task i in reports)."""
        yield from decode_all(decode_file, tasks, paths, desc=desc, workers=self.workers)

    def decode_files(self, root: Path, files: list[str], reader: str, **settings) -> Iterator[Clip | Skipped]:
        """Decode `files` (relative to `root`), one clip each, the subject from each relative path
        (`subject_pattern`, else the first sub-folder, else the name: then the clip's subject is not
        known); a file whose subject the pattern cannot read is reported as Skipped."""
        tasks, paths = [], []
        for rel in files:
            path = str(root / rel)
            try:
                subject = subject_of(rel, self._pattern)
            except ValueError as exc:
                yield Skipped(path, str(exc))
                continue
            tasks.append(self.task(path, rel, subject, reader, subject_known=names_subject(rel, self._pattern),
                                   **settings))
            paths.append(path)
        yield from self.decode(tasks, paths, desc=f"decoding {self.path}")


@dataclass(kw_only=True)
class ClipSource(FileSource):
    """A file source of clips: every `stride`-th frame, at most `max_frames` per clip, and the subject
    of a file from `subject_pattern` (group 1 of a regular expression) where given."""

    stride: int = 1
    max_frames: int | None = None
    crop: str = "auto"
    subject_pattern: str | None = None


def check_crop(crop: str) -> None:
    if crop not in CROPS:
        raise UserError(f"--crop must be one of {', '.join(CROPS)}, got {crop!r}")


def check_positive(name: str, value: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or value < 1:
        raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def check_settings(source) -> None:
    """Validate the decode settings a source has (each is optional)."""
    check_positive("resolution", getattr(source, "resolution", 1))
    if hasattr(source, "stride"):
        check_positive("stride", source.stride)
    if hasattr(source, "max_frames"):
        check_positive("max_frames", source.max_frames, allow_none=True)
    if hasattr(source, "crop"):
        check_crop(source.crop)
    workers = getattr(source, "workers", 0)
    if not isinstance(workers, int) or workers < 0:
        raise UserError(f"-o workers must be 0 (every core) or a positive integer, got {workers!r}")
