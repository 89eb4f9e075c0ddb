"""A changed single-file source rebuilds its frame cache: HDF5 file, CSV manifest, EchoNet's
FileList.csv, FETAL_PLANES_DB's CSV. Each change keeps the file's size and its mtime (a label
swapped and the clock restored, as a copy that keeps timestamps or a coarse file-system clock
would), so only the file's content can tell the caches apart."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmark.data.cache import FrameCache, fingerprint, prepare
from benchmark.data.sources import identity
from benchmark.data.spec import parse_dataset_spec
from tests.unit.test_sources_hdf5 import video
from tests.unit.test_sources_images import make_fetal_planes_db, write_image, write_rows
from tests.unit.test_sources_videos import make_echonet


@dataclass
class Case:
    spec: str
    role: str
    file: Path  # the single file whose content changes
    change: Callable[[], None]  # rewrites `file` in place, same size
    seen: Callable[[FrameCache], object]  # what the change alters in the cache


def _swap(path: Path, a: str, b: str) -> None:
    data, a_, b_ = path.read_bytes(), a.encode(), b.encode()  # bytes: the CSVs end their lines in CR LF
    assert a_ in data and b_ in data
    path.write_bytes(data.replace(a_, b"\0").replace(b_, a_).replace(b"\0", b_))


def hdf5_case(root: Path) -> Case:
    path = root / "videos.h5"
    with h5py.File(path, "w") as f:
        f["patient1/clip_a"] = video(4, 1)
        f["patient2/clip_b"] = video(4, 2)

    def change():
        with h5py.File(path, "r+") as f:
            f["patient2/clip_b"][...] = 255 - f["patient2/clip_b"][...]

    return Case(f"hdf5:{path}", "pretrain", path, change, lambda c: int(np.asarray(c.frames).sum()))


def csv_case(root: Path) -> Case:
    for k in range(6):
        write_image(root / f"{k}.png", 40 * k)
    path = write_rows(root / "labels.csv", ["path", "label", "subject"],
                      [[f"{k}.png", ["4CH", "3VV"][k % 2], f"s{k}"] for k in range(6)])
    return Case(f"csv:{path}", "downstream", path, lambda: _swap(path, "4CH", "3VV"),
                lambda c: c.index.sort_values("video_id")["label"].tolist())


def echonet_case(root: Path) -> Case:
    make_echonet(root)  # splits TRAIN, TRAIN, TRAIN, VAL, TEST
    path = root / "FileList.csv"
    # The first TRAIN video moves to TEST and the TEST one to TRAIN: same bytes in total. (Here the
    # list of pretraining videos changes too, and it is fingerprinted as well.)
    lines = path.read_bytes().splitlines(keepends=True)

    def change():
        lines[1], lines[5] = lines[1].replace(b"TRAIN", b"TEST"), lines[5].replace(b"TEST", b"TRAIN")
        path.write_bytes(b"".join(lines))

    return Case(f"echonet:{root}", "pretrain", path, change, lambda c: sorted(set(c.index["video_id"])))


def fetal_planes_db_case(root: Path) -> Case:
    make_fetal_planes_db(root, patients=6)
    path = root / "FETAL_PLANES_DB_data.csv"
    return Case(f"fetal_planes_db:{root}", "downstream", path, lambda: _swap(path, "Fetal brain", "Fetal femur"),
                lambda c: c.index.sort_values("video_id")["label"].tolist())


CASES = {"hdf5": hdf5_case, "csv": csv_case, "echonet": echonet_case, "fetal_planes_db": fetal_planes_db_case}


def _source(case: Case):
    return parse_dataset_spec(case.spec, resolution=16)  # a new object: sources memoise what they read


def _change_keeping_size_and_mtime(case: Case) -> None:
    st = case.file.stat()
    case.change()
    os.utime(case.file, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = case.file.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)  # the premise of the test


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_changed_file_of_the_same_size_and_mtime_rebuilds_the_cache(kind, tmp_path):
    (tmp_path / "data").mkdir()
    case = CASES[kind](tmp_path / "data")
    first = prepare(_source(case), case.role, tmp_path / "cache", progress=False)
    _change_keeping_size_and_mtime(case)
    assert fingerprint(_source(case), case.role) != first.fingerprint
    second = prepare(_source(case), case.role, tmp_path / "cache", progress=False)
    assert second.root != first.root
    assert case.seen(second) != case.seen(first)  # the new cache holds the new content


@pytest.mark.parametrize("kind", sorted(CASES))
def test_an_unchanged_file_keeps_its_fingerprint_even_when_touched(kind, tmp_path):
    (tmp_path / "data").mkdir()
    case = CASES[kind](tmp_path / "data")
    before = fingerprint(_source(case), case.role)
    st = case.file.stat()
    os.utime(case.file, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    assert fingerprint(_source(case), case.role) == before


def test_a_file_too_large_to_hash_is_identified_by_size_and_mtime(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    case = hdf5_case(tmp_path / "data")
    monkeypatch.setattr(identity, "CONTENT_HASH_MAX_BYTES", case.file.stat().st_size - 1)
    ident = identity.file_identity(case.file)
    assert set(ident) == {"name", "size", "mtime_ns"} and ident["size"] == case.file.stat().st_size
    before = fingerprint(_source(case), case.role)
    case.change()  # h5py's write moves the mtime on
    os.utime(case.file, ns=(case.file.stat().st_atime_ns, ident["mtime_ns"] + 10**9))
    assert fingerprint(_source(case), case.role) != before
    monkeypatch.setattr(identity, "CONTENT_HASH_MAX_BYTES", case.file.stat().st_size)
    assert set(identity.file_identity(case.file)) == {"name", "size", "sha256"}


def _tree(root: Path, sizes: dict[str, int]) -> list[str]:
    for rel, size in sizes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)
    return list(sizes)


def test_a_folder_of_files_is_identified_by_their_names_sizes_and_contents(tmp_path):
    """The same files give the same identity wherever they lie and whenever they were copied (a download
    sets new mtimes), so public data have the same fingerprint, and job keys, on every machine."""
    rels = _tree(tmp_path / "here", {"a/1.mp4": 10, "a/2.mp4": 20, "b/3.mp4": 30})
    first = identity.files_identity(tmp_path / "here", rels)
    assert set(first) == {"n_files", "files_sha256", "identity"} and first["n_files"] == 3
    assert first["identity"] == "content"
    assert identity.files_identity(tmp_path / "here", rels) == first
    assert identity.files_identity(tmp_path / "here", rels[:2])["n_files"] == 2
    assert identity.files_identity(tmp_path / "here", list(reversed(rels))) != first  # the listing order is the clip order
    # A copy elsewhere, with other mtimes, is the same data.
    _tree(tmp_path / "there", {"a/1.mp4": 10, "a/2.mp4": 20, "b/3.mp4": 30})
    for rel in rels:
        st = (tmp_path / "there" / rel).stat()
        os.utime(tmp_path / "there" / rel, ns=(st.st_atime_ns, st.st_mtime_ns + 7 * 10**9))
    assert identity.files_identity(tmp_path / "there", rels) == first
    # One byte changed, size and mtime kept: other data.
    target = tmp_path / "here" / "b/3.mp4"
    st = target.stat()
    target.write_bytes(b"y" + b"x" * 29)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert identity.files_identity(tmp_path / "here", rels) != first


def test_a_folder_too_large_to_hash_is_identified_by_sizes_and_mtimes(tmp_path, monkeypatch):
    monkeypatch.setattr(identity, "FOLDER_CONTENT_HASH_MAX_BYTES", 59)  # the tree below holds 60 bytes
    rels = _tree(tmp_path, {"a/1.mp4": 10, "a/2.mp4": 20, "b/3.mp4": 30})
    first = identity.files_identity(tmp_path, rels)
    assert first["identity"] == "stat"
    st = (tmp_path / "b/3.mp4").stat()
    os.utime(tmp_path / "b/3.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert identity.files_identity(tmp_path, rels) != first
    monkeypatch.setattr(identity, "FOLDER_CONTENT_HASH_MAX_BYTES", 60)
    assert identity.files_identity(tmp_path, rels)["identity"] == "content"


def test_missing_files_count_under_their_own_names_and_locations_can_differ_from_root(tmp_path):
    assert identity.files_identity(tmp_path, ["gone/a.mp4"]) != identity.files_identity(tmp_path, ["gone/b.mp4"])
    assert identity.files_identity(tmp_path, ["gone/a.mp4"])["n_files"] == 1
    elsewhere = tmp_path / "elsewhere"
    rels = _tree(elsewhere, {"img/1.png": 5, "img/2.png": 7})
    resolved = [elsewhere / r for r in rels]
    assert identity.files_identity(tmp_path / "manifest-dir", rels, resolved) == identity.files_identity(elsewhere, rels)
    with pytest.raises(ValueError):
        identity.files_identity(tmp_path, rels, resolved[:1])


def test_a_folder_is_read_once_per_process_while_its_files_stay_the_same(tmp_path, monkeypatch):
    rels = _tree(tmp_path, {"a/1.mp4": 10, "b/2.mp4": 20})
    first = identity.files_identity(tmp_path, rels)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert identity.files_identity(tmp_path, rels) == first and opened == []
    target = tmp_path / "b/2.mp4"
    st = target.stat()
    target.write_bytes(b"z" * 20)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten: read again
    assert identity.files_identity(tmp_path, rels) != first and [str(p) for p in opened] == [str(target)]
