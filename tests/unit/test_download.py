"""`sslbench data download`, offline: a miniature catalogue served from 127.0.0.1 by a server that can fail
on purpose (404, 500, a connection that breaks off, a transfer that hangs until the client is killed).

What must hold: files land with the right bytes and the spec line, terms and citation are printed; a stopped
run is continued by the next one and nothing partial ever looks complete; a wrong hash, a missing file and a
server error stop with the file named and leave nothing behind; an archive member that escapes is refused by
name and nothing of the archive is kept; the real registries are what the data sets hold."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest

from benchmark.data import download as dl
from benchmark.errors import DataError, UserError

REPO = Path(__file__).resolve().parents[2]
GITHUB_PATH = "owner/repo/0123abc/data/clips/"
# Names as the real registry has them: sub-folders, '+' and parentheses (they must be percent-encoded in URLs).
FILES = {"convex/Cov-Atlas+(44).gif": os.urandom(50_000), "convex/b.mp4": os.urandom(40_000),
         "linear/label_uncertain/c.avi": os.urandom(30_000)}
SPEC = "--dataset videos:{dir} --subject-pattern '([^/]+)$'"
RECORD = 4242


class Server:
    """Serves `files` (URL path → bytes). `faults[path]` is a list of what the next requests of that path get:
    '404', '500', 'drop' (the headers promise the whole file, half of it comes, then the connection closes)
    or 'hang' (half of it, then nothing until `release` is set). `log` lists every path asked for."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.log: list[str] = []
        self.raw: list[str] = []  # the paths as requested, before percent-decoding
        self.hanging, self.release = threading.Event(), threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = unquote(urlsplit(self.path).path)
                server.log.append(path)
                server.raw.append(self.path)
                pending = server.faults.get(path) or []
                fault = pending.pop(0) if pending else None
                body = server.files.get(path)
                if body is None or fault == "404":
                    self.send_error(404)
                    return
                if fault == "500":
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault in ("drop", "hang"):
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    if fault == "hang":
                        server.hanging.set()
                        server.release.wait(30)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def asked(self, rel: str) -> int:
        return self.log.count("/" + GITHUB_PATH + rel)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    import pooch.core

    waits: list[float] = []
    monkeypatch.setattr(pooch.core, "time", SimpleNamespace(sleep=waits.append))  # pooch's pause between retries
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in (dl.MIRROR_ENV, dl.DATA_DIR_ENV, *(env for env, _ in dl.HOSTS.values())):
        monkeypatch.delenv(var, raising=False)
    srv = Server()
    srv.waits = waits
    for rel, body in FILES.items():
        srv.files["/" + GITHUB_PATH + rel] = body
    yield srv
    srv.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_catalogue(folder: Path, hashes: dict[str, str] | None = None, archive: str = "tiny.tar.gz") -> Path:
    """A miniature catalogue: `tiny` file by file from the github host (the registry's hashes: `hashes`,
    else the files'), or from a Zenodo record with one archive."""
    folder.mkdir(parents=True, exist_ok=True)
    hashes = hashes or {rel: sha256(body) for rel, body in FILES.items()}
    (folder / "tiny.txt").write_text("# a miniature registry\n" + "".join(f"'{rel}' {h}\n" for rel, h in hashes.items()))
    (folder / "datasets.toml").write_text(f'''
[tiny]
title = "three tiny clips"
role = "pretraining"
terms = "TERMS: share alike, cite us"
citation = "Doe et al., Tiny Clips, 2024"

[[tiny.sources]]
name = "github"
host = "github"
path = "{GITHUB_PATH}"
registry = "tiny.txt"
spec = "{SPEC.replace("'", "'")}"

[[tiny.sources]]
name = "zenodo"
host = "zenodo"
record = {RECORD}
files = ["{archive}"]
unpack = true
root = "labels.csv"
spec = "--downstream csv:{{dir}}/labels.csv"
''')
    return folder / "datasets.toml"


def run(catalogue: Path, to: Path, server: Server, **kw):
    kw.setdefault("retries", 0)
    kw.setdefault("progress", False)
    said: list[str] = []
    roots = dl.download(["tiny"], to, mirror=server.url, catalogue=catalogue, say=said.append, **kw)
    return roots, "\n".join(said)


def visible_files(folder: Path) -> dict[str, bytes]:
    """The files a data source would read: everything but hidden files and folders."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def all_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---- file by file ---------------------------------------------------------------------------------

def test_a_good_download_lands_every_file_and_prints_terms_citation_and_spec(server, tmp_path, monkeypatch, capsys):
    from benchmark.cli import main

    monkeypatch.setattr(dl, "CATALOGUE", write_catalogue(tmp_path / "cat"))
    assert main(["data", "download", "tiny", "--to", str(tmp_path / "data"), "--mirror", server.url]) == 0
    out, err = capsys.readouterr()
    target = tmp_path / "data" / "tiny"
    assert visible_files(target) == FILES
    assert all_files(target) == sorted([*FILES, dl.MARKER]) and not (target / dl.STAGING).exists()
    terms, citation, spec = out.index("TERMS: share alike"), out.index("Doe et al., Tiny Clips"), out.index("use it with")
    assert terms < citation < spec  # the terms before anything is fetched, the spec last
    assert out.rstrip().endswith(f"--dataset videos:{target} --subject-pattern '([^/]+)$'")
    assert "tiny: 100%" in err and "3/3" in err  # the progress bar of files
    # The URL of each file: below the github path, percent-encoded ('+' and parentheses included).
    assert server.asked("convex/Cov-Atlas+(44).gif") == 1 and server.asked("linear/label_uncertain/c.avi") == 1
    assert f"/{GITHUB_PATH}convex/Cov-Atlas%2B%2844%29.gif" in server.raw


def test_the_default_folder_is_sslbench_data_dir_and_an_unknown_name_lists_the_known_ones(server, tmp_path,
                                                                                          monkeypatch, capsys):
    from benchmark.cli import main

    monkeypatch.setattr(dl, "CATALOGUE", write_catalogue(tmp_path / "cat"))
    monkeypatch.setenv(dl.DATA_DIR_ENV, str(tmp_path / "env"))
    monkeypatch.setenv(dl.MIRROR_ENV, server.url)
    assert main(["data", "download", "tiny"]) == 0
    assert visible_files(tmp_path / "env" / "tiny") == FILES
    capsys.readouterr()
    assert main(["data", "download", "tiny", "pocus"]) == 2
    err = capsys.readouterr().err
    assert "unknown data set 'pocus'" in err and "tiny" in err and "three tiny clips" in err
    with pytest.raises(UserError, match="--source figshare: tiny comes from github or zenodo"):
        dl.download(["tiny"], tmp_path, source="figshare", catalogue=dl.CATALOGUE)


def test_a_mirror_replaces_the_host_and_each_host_has_its_variable(monkeypatch):
    for var in (dl.MIRROR_ENV, *(env for env, _ in dl.HOSTS.values())):
        monkeypatch.delenv(var, raising=False)
    assert dl.base_urls() == {"github": "https://raw.githubusercontent.com", "zenodo": "https://zenodo.org"}
    monkeypatch.setenv("SSLBENCH_ZENODO_URL", "https://proxy.example/zenodo/")
    assert dl.base_urls() == {"github": "https://raw.githubusercontent.com", "zenodo": "https://proxy.example/zenodo"}
    assert dl.base_urls("http://mirror:8000/") == {"github": "http://mirror:8000", "zenodo": "http://mirror:8000"}


def test_a_second_run_keeps_files_with_the_right_hash_and_fetches_the_rest(server, tmp_path):
    catalogue = write_catalogue(tmp_path / "cat")
    run(catalogue, tmp_path / "data", server)
    target = tmp_path / "data" / "tiny"
    (target / "convex" / "b.mp4").unlink()
    (target / "linear/label_uncertain/c.avi").write_bytes(b"changed by hand")
    _, said = run(catalogue, tmp_path / "data", server)
    assert "2 of 3 files to fetch (1 already here)" in said
    assert server.asked("convex/Cov-Atlas+(44).gif") == 1  # not fetched again
    assert server.asked("convex/b.mp4") == 2 and server.asked("linear/label_uncertain/c.avi") == 2
    assert visible_files(target) == FILES
    _, said = run(catalogue, tmp_path / "data", server)
    assert "all 3 files already here" in said and len(server.log) == 5


def test_a_connection_that_breaks_off_stops_cleanly_and_the_next_run_continues(server, tmp_path):
    catalogue = write_catalogue(tmp_path / "cat")
    server.faults["/" + GITHUB_PATH + "convex/b.mp4"] = ["drop"]
    with pytest.raises(DataError, match="broke off") as err:
        run(catalogue, tmp_path / "data", server)
    target = tmp_path / "data" / "tiny"
    assert "convex/b.mp4" in str(err.value) and "run the same command again" in str(err.value)
    # Nothing looks like data: the verified first file waits, hidden, in the staging folder; no partial file.
    assert visible_files(target) == {}
    assert all_files(target) == [f"{dl.STAGING}/convex/Cov-Atlas+(44).gif"]
    _, said = run(catalogue, tmp_path / "data", server)
    assert visible_files(target) == FILES and not (target / dl.STAGING).exists()
    assert server.asked("convex/Cov-Atlas+(44).gif") == 1  # continued, not started over


def test_a_transient_failure_is_retried(server, tmp_path):
    catalogue = write_catalogue(tmp_path / "cat")
    server.faults["/" + GITHUB_PATH + "convex/b.mp4"] = ["drop"]
    server.faults["/" + GITHUB_PATH + "linear/label_uncertain/c.avi"] = ["500"]
    run(catalogue, tmp_path / "data", server, retries=1)
    assert visible_files(tmp_path / "data" / "tiny") == FILES
    assert server.asked("convex/b.mp4") == 2 and server.asked("linear/label_uncertain/c.avi") == 2
    assert server.waits == [1, 1]  # pooch's pause before each retry


def test_a_killed_download_leaves_nothing_that_looks_complete_and_the_next_run_finishes(server, tmp_path):
    catalogue = write_catalogue(tmp_path / "cat")
    server.faults["/" + GITHUB_PATH + "convex/b.mp4"] = ["hang"]
    code = ("import sys; from pathlib import Path; from benchmark.data.download import download; "
            "download(['tiny'], sys.argv[1], mirror=sys.argv[2], catalogue=Path(sys.argv[3]), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "data"), server.url, str(catalogue)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert server.hanging.wait(60), proc.stderr.read().decode() if proc.poll() is not None else "no request"
        os.kill(proc.pid, signal.SIGKILL)  # mid-transfer: half of b.mp4 is on disk
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    server.release.set()
    target = tmp_path / "data" / "tiny"
    assert visible_files(target) == {}  # no source sees a half data set or half a file
    left = all_files(target)
    assert f"{dl.STAGING}/convex/Cov-Atlas+(44).gif" in left and "convex/b.mp4" not in left
    assert any(Path(p).name.startswith("tmp") for p in left)  # pooch's temporary, the killed transfer's half
    # The next run removes the temporary first, even when it stops too (here: the last file is missing).
    server.faults["/" + GITHUB_PATH + "linear/label_uncertain/c.avi"] = ["404"]
    with pytest.raises(DataError, match="HTTP 404"):
        run(catalogue, tmp_path / "data", server)
    assert all_files(target) == [f"{dl.STAGING}/convex/Cov-Atlas+(44).gif", f"{dl.STAGING}/convex/b.mp4"]
    run(catalogue, tmp_path / "data", server)
    assert visible_files(target) == FILES
    assert all_files(target) == sorted([*FILES, dl.MARKER])
    assert server.asked("convex/Cov-Atlas+(44).gif") == 1 and server.asked("convex/b.mp4") == 2


def test_a_file_with_the_wrong_hash_is_refused_by_name_with_both_hashes_and_not_kept(server, tmp_path):
    wrong = {rel: sha256(body) for rel, body in FILES.items()}
    wrong["convex/b.mp4"] = sha256(b"what the registry pins")
    catalogue = write_catalogue(tmp_path / "cat", wrong)
    with pytest.raises(DataError) as err:
        run(catalogue, tmp_path / "data", server)
    message = str(err.value)
    assert message.startswith("convex/b.mp4: SHA256 mismatch")
    assert wrong["convex/b.mp4"] in message and sha256(FILES["convex/b.mp4"]) in message
    target = tmp_path / "data" / "tiny"
    assert visible_files(target) == {} and not any("b.mp4" in p or "tmp" in p for p in all_files(target))


@pytest.mark.parametrize("fault, status, asked", [("404", "HTTP 404", 1), ("500", "HTTP 500", 2)])
def test_a_missing_file_or_a_server_error_stops_with_the_file_named_and_nothing_left(server, tmp_path, fault,
                                                                                     status, asked):
    catalogue = write_catalogue(tmp_path / "cat")
    first = "convex/Cov-Atlas+(44).gif"
    server.faults["/" + GITHUB_PATH + first] = [fault] * 5
    with pytest.raises(DataError, match=status) as err:
        run(catalogue, tmp_path / "data", server, retries=1)
    assert first in str(err.value) or "Cov-Atlas%2B%2844%29.gif" in str(err.value)
    assert not (tmp_path / "data").exists()  # the run made the folders and took them back
    assert server.asked(first) == asked  # a 404 is not retried, a 500 is
    assert server.asked("convex/b.mp4") == 0


def test_without_network_each_host_stops_with_the_way_out(server, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    server.url = closed
    catalogue = write_catalogue(tmp_path / "cat")
    for source in ("github", "zenodo"):
        with pytest.raises(DataError, match=r"could not reach the server .*--mirror URL or \$SSLBENCH_DATA_MIRROR"):
            run(catalogue, tmp_path / "data", server, source=source)
        assert not (tmp_path / "data").exists()


# ---- Zenodo records and archives ----------------------------------------------------------------------

def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


GOOD_ARCHIVE = [("Tiny_dataset/labels.csv", b"path,label\nimg/a.png,x\n"), ("Tiny_dataset/img/a.png", b"png")]


def serve_record(server: Server, archive: bytes, name: str = "tiny.tar.gz", checksum: str | None = None) -> None:
    server.files[f"/records/{RECORD}/files/{name}"] = archive
    listing = {"id": RECORD, "files": [{"key": name, "size": len(archive),
                                        "checksum": checksum or "md5:" + hashlib.md5(archive).hexdigest()}]}
    server.files[f"/api/records/{RECORD}"] = json.dumps(listing).encode()


def test_a_zenodo_record_is_checked_with_its_published_checksum_and_unpacked(server, tmp_path):
    serve_record(server, tar_bytes(GOOD_ARCHIVE))
    catalogue = write_catalogue(tmp_path / "cat")
    roots, said = run(catalogue, tmp_path / "data", server, source="zenodo")
    target = tmp_path / "data" / "tiny"
    assert roots == [target / "Tiny_dataset"]  # the folder holding the catalogue's `root` file
    assert visible_files(target) == {name: body for name, body in GOOD_ARCHIVE}  # the archive is not kept
    assert said.endswith(f"--downstream csv:{target / 'Tiny_dataset'}/labels.csv")
    asked = len(server.log)
    roots_again, said = run(catalogue, tmp_path / "data", server, source="zenodo")
    assert roots_again == roots and "already unpacked" in said and len(server.log) == asked  # no network


def test_a_zenodo_file_with_another_checksum_than_the_record_publishes_is_refused(server, tmp_path):
    serve_record(server, tar_bytes(GOOD_ARCHIVE), checksum="md5:" + hashlib.md5(b"another").hexdigest())
    with pytest.raises(DataError, match=r"tiny.tar.gz: MD5 mismatch: expected [0-9a-f]{32}, got"):
        run(write_catalogue(tmp_path / "cat"), tmp_path / "data", server, source="zenodo")
    assert not (tmp_path / "data" / "tiny").exists()


def test_a_zenodo_record_without_the_file_names_what_it_has(server, tmp_path):
    serve_record(server, tar_bytes(GOOD_ARCHIVE), name="other.zip")
    with pytest.raises(DataError, match="record 4242 has no file 'tiny.tar.gz'; it has 'other.zip'"):
        run(write_catalogue(tmp_path / "cat"), tmp_path / "data", server, source="zenodo")


def _link(name: str, kind: bytes, to: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, to
    return info


ESCAPES = {
    "parent": ([*GOOD_ARCHIVE, ("Tiny_dataset/../../evil.txt", b"x")], "'Tiny_dataset/../../evil.txt' would be written outside"),
    "absolute": ([*GOOD_ARCHIVE, ("/tmp/evil.txt", b"x")], "'/tmp/evil.txt' would be written outside"),
    "symlink": ([*GOOD_ARCHIVE, _link("Tiny_dataset/passwd", tarfile.SYMTYPE, "/etc/passwd")],
                "'Tiny_dataset/passwd' is a symbolic link"),
    "hardlink": ([*GOOD_ARCHIVE, _link("Tiny_dataset/hard", tarfile.LNKTYPE, "/etc/passwd")],
                 "'Tiny_dataset/hard' is a hard link"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_an_archive_member_that_escapes_is_refused_by_name_and_nothing_is_kept(server, tmp_path, case):
    members, reason = ESCAPES[case]
    serve_record(server, tar_bytes(members))
    with pytest.raises(DataError, match="refused, nothing of the archive was kept") as err:
        run(write_catalogue(tmp_path / "cat"), tmp_path / "data", server, source="zenodo")
    assert reason in str(err.value) and "tiny.tar.gz" in str(err.value)
    assert not (tmp_path / "data" / "tiny").exists()  # neither the good members, nor the archive, nor a folder
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "evil.txt").exists()


def test_a_zip_member_that_escapes_is_refused_and_a_good_zip_is_unpacked(tmp_path):
    def zipped(names: list[str], symlink: str | None = None) -> Path:
        path = tmp_path / "a.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for n in names:
                zf.writestr(n, b"data")
            if symlink:
                info = zipfile.ZipInfo(symlink)
                info.external_attr = (0o120777 << 16)
                zf.writestr(info, "/etc/passwd")
        return path

    for names, symlink, reason in ((["ok/a.txt", "ok/../../up.txt"], None, "'ok/../../up.txt' would be written outside"),
                                   (["ok/a.txt"], "ok/link", "'ok/link' is a symbolic link")):
        archive = zipped(names, symlink)
        with pytest.raises(dl.UnsafeArchive, match=reason):
            dl.unpack(archive, tmp_path / "out", tmp_path / "scratch")
        assert not archive.exists() and not (tmp_path / "out").exists() and not (tmp_path / "scratch").exists()
    (tmp_path / "out").mkdir()
    assert dl.unpack(zipped(["ok/a.txt", "__MACOSX/ok/._a.txt"]), tmp_path / "out", tmp_path / "scratch") == \
        {"ok/a.txt": 4}
    assert all_files(tmp_path / "out") == ["ok/a.txt"]


def test_zenodo_listings_of_each_api_generation():
    legacy = {"files": [{"key": "a.zip", "checksum": "md5:ABC", "size": 3}]}
    invenio = {"files": [{"filename": "a.zip", "checksum": "abc", "filesize": 3}]}
    entries = {"files": {"entries": {"a.zip": {"key": "a.zip", "checksum": "md5:abc", "size": 3}}}}
    assert dl.zenodo_listing(legacy) == dl.zenodo_listing(invenio) == dl.zenodo_listing(entries) == \
        {"a.zip": ("md5:abc", 3)}


# ---- the real catalogue ------------------------------------------------------------------------------

def test_the_real_catalogue_pins_every_file_of_each_data_set():
    sets = dl.load_catalogue()
    assert list(sets) == ["pocus_videos", "african_fetal_planes", "fetal_planes_db"]
    pocus = dl.read_registry(sets["pocus_videos"].source(None).registry)
    assert len(pocus) == 131 and all(len(h) == 64 and int(h, 16) >= 0 for h in pocus.values())
    assert sum(r.startswith("convex/") for r in pocus) == 121 and sum(r.startswith("linear/") for r in pocus) == 10
    assert "linear/label_uncertain/Vir_or_Pneu_prospective_file4.mp4" in pocus
    african = dl.read_registry(sets["african_fetal_planes"].source("github").registry)
    assert {"african_train/African_train.csv", "african_test/African_test.csv"} <= set(african)
    assert sum(r.startswith("african_train/") and r.endswith(".png") for r in african) == 217
    assert sum(r.startswith("african_test/") and r.endswith(".png") for r in african) == 233
    fpdb = sets["fetal_planes_db"].source(None)
    assert (fpdb.record, fpdb.files, fpdb.unpack, fpdb.root) == \
        (3904280, ("FETAL_PLANES_ZENODO.zip",), True, "FETAL_PLANES_DB_data.csv")
    assert sets["african_fetal_planes"].source("zenodo").record == 7540448
    for ds in sets.values():
        assert ds.terms and ds.citation and all("{dir}" in s.spec for s in ds.sources)


def test_a_registry_entry_that_leaves_the_folder_is_refused(tmp_path):
    (tmp_path / "r.txt").write_text(f"../outside {'0' * 64}\n")
    with pytest.raises(DataError, match="'../outside' leaves the download folder"):
        dl.read_registry(tmp_path / "r.txt")
