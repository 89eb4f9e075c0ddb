"""`sslbench data download NAME`: fetch a public data set once, checked file by file, before any benchmark
runs (a benchmark itself never downloads).

What the data sets are, where they come from and how each file is checked is data: registry/datasets.toml
and the pooch registries beside it. Pooch does the transfers (retries, progress, a temporary file moved
into place only when its hash matches); this module adds what a data set needs around that:

- Staging: files are fetched into DIR/.sslbench-download/ (hidden, so no source reads it) and moved into
  DIR only when every file of the data set is verified, so a half-fetched data set never looks like one.
  What was verified stays there when a run stops, and the next run continues from it; a leftover partial
  file (a killed run's temporary) is removed first. A file already in DIR with the right hash is kept.
- Checks: a file whose hash differs from the registry's is refused with its name, both hashes and the
  URL, and is not kept; an HTTP 4xx stops at once, a 5xx or a broken connection is retried, then stops.
- Zenodo records: the checksum each file must have is the one Zenodo publishes in its records API (read
  here rather than through pooch's DOI support, which resolves through doi.org and zenodo.org and so
  cannot be pointed at a mirror or a test server).
- Archives are unpacked only when no member leaves the target folder (`..`, an absolute path) and none is
  a link or a device; otherwise the archive is refused by that member's name and nothing of it is kept.
  (Pooch's Unzip/Untar processors extract everything as it is.)
- Mirrors: `--mirror URL` (or $SSLBENCH_DATA_MIRROR) is a server answering the same paths as
  raw.githubusercontent.com and zenodo.org; $SSLBENCH_GITHUB_URL and $SSLBENCH_ZENODO_URL replace one host.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from benchmark.errors import DataError, UserError

CATALOGUE = Path(__file__).with_name("registry") / "datasets.toml"
HOSTS = {"github": ("SSLBENCH_GITHUB_URL", "https://raw.githubusercontent.com"),
         "zenodo": ("SSLBENCH_ZENODO_URL", "https://zenodo.org")}
MIRROR_ENV = "SSLBENCH_DATA_MIRROR"
DATA_DIR_ENV = "SSLBENCH_DATA_DIR"
STAGING = ".sslbench-download"
MARKER = ".sslbench-download.json"  # written last: a data set is complete when it is there
RETRIES = 2
TIMEOUT = (20, 120)  # seconds to connect, and between two reads of a transfer
CHUNK = 2**16
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


@dataclass(frozen=True)
class Source:
    """One place a data set can be fetched from (see registry/datasets.toml)."""

    name: str
    host: str
    spec: str
    path: str = ""  # file by file: the folder's URL below the host
    registry: Path | None = None  # file by file: a pooch registry (path in DIR, SHA-256 or "alg:hash")
    record: int | None = None  # a Zenodo record: its files, with the checksums Zenodo publishes
    files: tuple[str, ...] = ()
    unpack: bool = False
    root: str = ""  # the spec points at the folder holding this file ("" = DIR itself)


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    role: str
    terms: str
    citation: str
    sources: tuple[Source, ...]

    def source(self, name: str | None) -> Source:
        if name is None:
            return self.sources[0]
        for src in self.sources:
            if src.name == name:
                return src
        raise UserError(f"--source {name}: {self.name} comes from {' or '.join(s.name for s in self.sources)}")


@dataclass(frozen=True)
class Entry:
    """A file to fetch: where it goes in DIR, its URL and the hash it must have."""

    rel: str
    url: str
    known_hash: str
    size: int | None = None


def load_catalogue(path: Path | None = None) -> dict[str, Dataset]:
    """The data sets of a catalogue file (default: CATALOGUE; their pooch registries, in its folder, are
    read when used)."""
    path = path or CATALOGUE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataError(path, f"not a readable data set catalogue ({exc})") from exc
    out = {}
    for name, spec in raw.items():
        try:
            sources = []
            for s in spec["sources"]:
                if s.get("host") not in HOSTS:
                    raise DataError(path, f"[{name}] source {s.get('name')!r}: host must be one of {', '.join(HOSTS)}")
                registry = path.parent / s["registry"] if "registry" in s else None
                sources.append(Source(name=s["name"], host=s["host"], spec=s["spec"], path=s.get("path", ""),
                                      registry=registry, record=s.get("record"), files=tuple(s.get("files", ())),
                                      unpack=bool(s.get("unpack", False)), root=s.get("root", "")))
            out[name] = Dataset(name=name, title=spec["title"], role=spec["role"], terms=spec["terms"],
                                citation=spec["citation"], sources=tuple(sources))
        except KeyError as exc:
            raise DataError(path, f"[{name}] lacks the key {exc}") from exc
    return out


def listing(catalogue: Path | None = None) -> str:
    """The data sets, for `sslbench data download --help`."""
    return "data sets:\n" + "\n".join(
        f"  {d.name:<22} {d.role}; from {' or '.join(s.name for s in d.sources)}\n    {d.title}"
        for d in load_catalogue(catalogue).values())


def read_registry(path: Path) -> dict[str, str]:
    """A pooch registry file (`path hash` per line, `#` comments), read by pooch itself."""
    import pooch

    pup = pooch.create(path=path.parent, base_url="")
    try:
        pup.load_registry(path)
    except OSError as exc:
        raise DataError(path, f"not a readable pooch registry ({exc})") from exc
    for rel in pup.registry:
        if not safe_relative(rel):
            raise DataError(path, f"entry {rel!r} leaves the download folder; paths must be relative, without '..'")
    return dict(pup.registry)


def default_root() -> Path:
    """Where data sets go without --to: $SSLBENCH_DATA_DIR, else the user's cache (~/.cache/sslbench/data)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    import pooch

    return Path(pooch.os_cache("sslbench")) / "data"


def base_urls(mirror: str | None = None) -> dict[str, str]:
    """Each host's base URL: the mirror for all of them, else its own variable, else the public host."""
    mirror = mirror or os.environ.get(MIRROR_ENV)
    return {host: (mirror or os.environ.get(env) or default).rstrip("/") for host, (env, default) in HOSTS.items()}


def download(names: list[str], to: str | Path | None = None, *, source: str | None = None,
             mirror: str | None = None, catalogue: Path | None = None, retries: int = RETRIES,
             progress: bool = True, say: Callable[[str], None] = print) -> list[Path]:
    """Fetch each named data set into TO/NAME (default: `default_root()`); returns the data folders
    their specs point at. Every name and source is checked before anything is fetched."""
    known = load_catalogue(catalogue)
    unknown = [n for n in names if n not in known]
    if unknown:
        listing = "\n".join(f"  {d.name:<22} {d.title}" for d in known.values())
        raise UserError(f"unknown data set {', '.join(map(repr, unknown))}; the ones `sslbench data download` "
                        f"knows:\n{listing}")
    chosen = [(known[n], known[n].source(source)) for n in dict.fromkeys(names)]
    root = (Path(to).expanduser() if to is not None else default_root()).absolute()  # the spec works anywhere
    hosts = base_urls(mirror)
    return [fetch_dataset(ds, src, root / ds.name, hosts, retries=retries, progress=progress, say=say)
            for ds, src in chosen]


def fetch_dataset(ds: Dataset, src: Source, target: Path, hosts: dict[str, str], *, retries: int = RETRIES,
                  progress: bool = True, say: Callable[[str], None] = print) -> Path:
    """Fetch one data set into `target`, print its terms first and the spec to use last."""
    say(f"{ds.name}: {ds.title}\n  terms:    {ds.terms}\n  citation: {ds.citation}\n"
        f"  from:     {hosts[src.host]} ({src.name}), into {target}")
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} is a file; give --to a folder (the data set goes into FOLDER/{ds.name})")
    made = next((p for p in reversed([target, *target.parents]) if not p.exists()), None)  # the topmost new folder
    staging = target / STAGING
    try:
        with _quiet_pooch():
            if src.unpack:
                data_root = _fetch_archives(ds, src, target, staging, hosts[src.host], retries, progress, say)
            else:
                data_root = _fetch_files(ds, src, target, staging, hosts[src.host], retries, progress, say)
    except BaseException:
        _tidy(staging, target, made)
        raise
    spec = src.spec.replace("{dir}", shlex.quote(str(data_root)))
    say(f"{ds.name}: ready in {data_root}\n  use it with:  {spec}")
    return data_root


# ---- file by file ---------------------------------------------------------------------------------

def _fetch_files(ds: Dataset, src: Source, target: Path, staging: Path, base: str, retries: int,
                 progress: bool, say) -> Path:
    entries = [Entry(rel, f"{base}/{src.path}{quote(rel)}", known) for rel, known in read_registry(src.registry).items()]
    present = {e.rel for e in entries if (target / e.rel).is_file() and _hash_ok(target / e.rel, e.known_hash)}
    todo = [e for e in entries if e.rel not in present]
    if todo:
        say(f"  {len(todo)} of {len(entries)} files to fetch" + (f" ({len(present)} already here)" if present else ""))
        _fetch(ds.name, todo, staging, retries, progress)
        for e in todo:  # every file verified: now they go into place
            dest = target / e.rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / e.rel, dest)
        shutil.rmtree(staging, ignore_errors=True)
    else:
        say(f"  all {len(entries)} files already here, each with its registered hash")
    _write_marker(target, ds, src, {e.rel: e.known_hash for e in entries}, {})
    return _data_root(target, src)


# ---- Zenodo records with archives -----------------------------------------------------------------

def _fetch_archives(ds: Dataset, src: Source, target: Path, staging: Path, base: str, retries: int,
                    progress: bool, say) -> Path:
    done = _complete(target, ds, src)
    if done is not None:  # no network needed: the marker records what was unpacked and from what
        say(f"  already unpacked ({len(done)} files, checked against Zenodo's checksums when fetched)")
        return _data_root(target, src)
    entries = zenodo_entries(base, src.record, src.files)
    size = sum(e.size or 0 for e in entries)
    shown = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
    say(f"  {len(entries)} file(s) of Zenodo record {src.record}" + (f", {shown}" if size else ""))
    _fetch(ds.name, entries, staging, retries, progress)
    unpacked: dict[str, int] = {}
    for e in entries:
        archive = staging / e.rel
        if e.rel.lower().endswith(ARCHIVES):
            say(f"  unpacking {e.rel}")
            unpacked.update(unpack(archive, target, staging / f".unpack-{e.rel}"))
        else:
            dest = target / e.rel
            os.replace(archive, dest)
            unpacked[e.rel] = dest.stat().st_size
    shutil.rmtree(staging, ignore_errors=True)
    root = _data_root(target, src)
    _write_marker(target, ds, src, {e.rel: e.known_hash for e in entries}, unpacked)
    return root


def zenodo_entries(base: str, record: int, wanted: tuple[str, ...]) -> list[Entry]:
    """The `wanted` files of a Zenodo record, with the checksums its records API publishes."""
    import requests

    url = f"{base}/api/records/{record}"
    try:
        response = requests.get(url, timeout=TIMEOUT, headers={"Accept": "application/json"})
        response.raise_for_status()
        listing = zenodo_listing(response.json())
    except requests.HTTPError as exc:
        raise DataError(url, f"HTTP {exc.response.status_code} {exc.response.reason}: the record's file list "
                             "could not be read (is the record public, and does the mirror hold it?)") from exc
    except requests.RequestException as exc:
        raise DataError(url, f"could not reach the server ({exc}); without network, fetch from a mirror "
                             f"(--mirror URL or ${MIRROR_ENV})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(url, f"not a Zenodo record listing ({exc})") from exc
    missing = [name for name in wanted if name not in listing]
    if missing:
        raise DataError(url, f"record {record} has no file {', '.join(map(repr, missing))}; it has "
                             f"{', '.join(map(repr, listing)) or 'no files'}")
    return [Entry(name, f"{base}/records/{record}/files/{quote(name)}?download=1", *listing[name])
            for name in wanted]


def zenodo_listing(answer: dict) -> dict[str, tuple[str, int | None]]:
    """name → (checksum as pooch writes it, size) from a records API answer: `files` as a list (the legacy
    serialisation, `key`; InvenioRDM's, `filename`) or as InvenioRDM's {"entries": {...}}."""
    files = answer["files"]
    items = files["entries"].values() if isinstance(files, dict) else files
    out = {}
    for f in items:
        name = f.get("key") or f.get("filename")
        checksum = str(f["checksum"]).lower()
        if not name or not checksum:
            raise ValueError(f"a file without a name or checksum: {f}")
        out[name] = (checksum if ":" in checksum else f"md5:{checksum}", f.get("size") or f.get("filesize"))
    return out


# ---- transfers --------------------------------------------------------------------------------------

def _fetch(name: str, entries: list[Entry], staging: Path, retries: int, progress: bool) -> None:
    """Fetch `entries` into `staging` through pooch: a file already staged with the right hash is kept,
    anything else there (a killed run's temporary) is removed first."""
    import pooch
    import requests
    from tqdm import tqdm

    _clear_leftovers(staging, {e.rel for e in entries})
    pup = pooch.create(path=staging, base_url="", registry={e.rel: e.known_hash for e in entries},
                       urls={e.rel: e.url for e in entries}, retry_if_failed=retries)

    def kept() -> str:
        n = sum((staging / x.rel).is_file() for x in entries)
        return (f" The {n} file(s) verified so far are kept in {staging}; run the same command again to "
                "continue." if n else "")

    with tqdm(total=len(entries), desc=name, unit="file", disable=not progress, file=sys.stderr) as bar:
        for e in entries:
            try:
                pup.fetch(e.rel, downloader=_Checked(e, progress))
            except requests.RequestException as exc:
                raise DataError(e.url, f"{_reason(exc)} (tried {retries + 1} time{'s' if retries else ''}); nothing "
                                       f"was kept of {e.rel}.{kept()}{_offline_hint(exc)}") from exc
            except DataError as exc:
                raise DataError(exc.path, exc.reason + kept()) from exc
            bar.update()


class _Checked:
    """Pooch's HTTP downloader with a byte progress bar, that refuses a file with the wrong hash (with
    both hashes; pooch then deletes it) and does not retry a 4xx, which no retry mends."""

    def __init__(self, entry: Entry, progress: bool):
        self.entry, self.progress = entry, progress

    def __call__(self, url: str, output_file: str, pup) -> None:
        import pooch
        import requests

        bar = _ByteBar(PurePosixPath(self.entry.rel).name) if self.progress else False
        try:
            pooch.HTTPDownloader(progressbar=bar, chunk_size=CHUNK, timeout=TIMEOUT)(url, output_file, pup)
        except requests.HTTPError as exc:
            status = exc.response.status_code
            if 400 <= status < 500:
                raise DataError(url, f"HTTP {status} {exc.response.reason}: {self.entry.rel} is not on the server "
                                     "(with a mirror: does it hold the file at this path?); nothing was kept of "
                                     "it.") from exc
            raise
        finally:
            if bar:
                bar.close()
        alg, _, expected = self.entry.known_hash.rpartition(":")
        actual = pooch.file_hash(output_file, alg=alg or "sha256")
        if actual.lower() != expected.lower():
            raise DataError(self.entry.rel, f"{(alg or 'sha256').upper()} mismatch: expected {expected}, got "
                                            f"{actual} (from {url}); the file was not kept. The server holds "
                                            "another file than the registry pins: check the mirror, or report it.")


class _ByteBar:
    """The progress bar pooch's downloader drives (it sets `total`, then calls update, reset and close):
    a tqdm that disappears when its file is done, under the bar of files."""

    def __init__(self, desc: str):
        from tqdm import tqdm

        self._bar = tqdm(desc=desc, unit="B", unit_scale=True, leave=False, file=sys.stderr)

    @property
    def total(self):
        return self._bar.total

    @total.setter
    def total(self, value) -> None:
        self._bar.total = value

    def update(self, n: int) -> None:
        self._bar.update(n)

    def reset(self) -> None:
        self._bar.reset(total=self._bar.total)

    def close(self) -> None:
        self._bar.close()


def _reason(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.HTTPError):
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"the connection broke off during the transfer ({exc})"
    if isinstance(exc, requests.ConnectionError):
        return f"could not reach the server ({exc})"
    if isinstance(exc, requests.Timeout):
        return f"the server stopped answering ({exc})"
    return str(exc)


def _offline_hint(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.ConnectionError):
        return f" Without network, fetch from a mirror (--mirror URL or ${MIRROR_ENV})."
    return ""


def _hash_ok(path: Path, known_hash: str) -> bool:
    import pooch

    alg, _, expected = known_hash.rpartition(":")
    return pooch.file_hash(str(path), alg=alg or "sha256").lower() == expected.lower()


@contextlib.contextmanager
def _quiet_pooch():
    """Pooch logs every file it fetches; the progress bars say that already."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---- the folders --------------------------------------------------------------------------------------

def _clear_leftovers(staging: Path, keep: set[str]) -> None:
    """Remove from `staging` every file that is not one of `keep` (a killed run's temporaries and unpacking
    folders), and the folders left empty."""
    if not staging.is_dir():
        return
    for dirpath, _, filenames in os.walk(staging, topdown=False):
        for name in filenames:
            path = Path(dirpath, name)
            if path.relative_to(staging).as_posix() not in keep:
                path.unlink()
        if dirpath != str(staging) and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _tidy(staging: Path, target: Path, made: Path | None) -> None:
    """After a failed run (pooch and `unpack` have removed their temporaries): no empty folders, and the
    folders this run made (`made` and those below it, down to `target`) go if nothing is in them."""
    if staging.is_dir():
        for dirpath, _, _ in os.walk(staging, topdown=False):
            if not os.listdir(dirpath):
                os.rmdir(dirpath)
    folder = target
    while made is not None and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        if folder == made:
            break
        folder = folder.parent


def _data_root(target: Path, src: Source) -> Path:
    """The folder the spec points at: the shallowest one holding `src.root`, else `target`."""
    if not src.root:
        return target
    found = sorted((p for p in target.rglob(src.root) if STAGING not in p.parts and p.is_file()),
                   key=lambda p: len(p.parts))
    if not found:
        raise DataError(target, f"fetched, but no {src.root} in it: the published layout has changed; look in "
                                f"{target} and point the spec at the folder that holds the data")
    return found[0].parent


def _write_marker(target: Path, ds: Dataset, src: Source, hashes: dict[str, str], unpacked: dict[str, int]) -> None:
    tmp = target / f"{MARKER}.tmp"
    tmp.write_text(json.dumps({"name": ds.name, "source": src.name, "hashes": hashes, "unpacked": unpacked},
                              indent=1, sort_keys=True))
    os.replace(tmp, target / MARKER)


def _complete(target: Path, ds: Dataset, src: Source) -> dict[str, int] | None:
    """The files an earlier run unpacked into `target`, if the marker says it finished and each is still
    there at its size; None otherwise."""
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if marker.get("name") != ds.name or marker.get("source") != src.name or not marker.get("unpacked"):
        return None
    files = marker["unpacked"]
    ok = all((target / rel).is_file() and (target / rel).stat().st_size == size for rel, size in files.items())
    return files if ok else None


# ---- unpacking --------------------------------------------------------------------------------------

def safe_relative(name: str) -> bool:
    """Whether an archive member's (or registry entry's) path stays inside the folder it is unpacked into."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]


class UnsafeArchive(DataError):
    """An archive with a member that would land outside its folder, or a link or device."""


def check_members(archive: Path) -> None:
    """Raise UnsafeArchive, naming the member, if any member of a zip or tar archive leaves the folder it
    is unpacked into (see `safe_relative`), or is a link or a device."""
    refuse = "refused, nothing of the archive was kept: member"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for m in zf.infolist():
                if not safe_relative(m.filename):
                    raise UnsafeArchive(archive, f"{refuse} {m.filename!r} would be written outside the target folder")
                if (m.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchive(archive, f"{refuse} {m.filename!r} is a symbolic link")
        return
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            if not safe_relative(m.name):
                raise UnsafeArchive(archive, f"{refuse} {m.name!r} would be written outside the target folder")
            if m.issym() or m.islnk():
                raise UnsafeArchive(archive, f"{refuse} {m.name!r} is a {'symbolic' if m.issym() else 'hard'} "
                                             f"link (to {m.linkname!r})")
            if not (m.isfile() or m.isdir()):
                raise UnsafeArchive(archive, f"{refuse} {m.name!r} is a device or pipe, not a file")


def unpack(archive: Path, target: Path, scratch: Path) -> dict[str, int]:
    """Unpack a zip or tar archive into `target`, all or nothing: every member is checked first
    (`check_members`; a refused archive is deleted), the archive is extracted into `scratch` and its
    top-level entries then moved into `target`. Returns each unpacked file's path in `target` and size."""
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        if not (zipfile.is_zipfile(archive) or tarfile.is_tarfile(archive)):
            raise DataError(archive, "neither a zip nor a tar archive; nothing was unpacked")
        check_members(archive)
        scratch.mkdir(parents=True)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(scratch, [m for m in zf.infolist() if not m.filename.startswith("__MACOSX/")])
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(scratch, filter="data")  # Python's own guard, after ours
        files = {p.relative_to(scratch).as_posix(): p.stat().st_size for p in scratch.rglob("*") if p.is_file()}
        for entry in sorted(scratch.iterdir()):
            dest = target / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)  # an earlier, unfinished unpacking of this data set
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(entry, dest)
        return files
    except UnsafeArchive:
        archive.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(archive, f"could not be unpacked ({exc}); nothing of it was kept") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
