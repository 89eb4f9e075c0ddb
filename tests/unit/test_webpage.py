"""leaderboard/site/index.html on fixture results: every table, nothing fetched from outside the file,
the same bytes from the same results, the --check gate; and, when a Chromium binary is installed, the
page loaded from disk by a headless browser (tables in the DOM, a sort, no console error, a screenshot
that is not blank)."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from leaderboard import analysis
from leaderboard.load import load_results
from leaderboard.regenerate import site_path
from leaderboard.webpage import COLUMNS, table_id
from protocols.spec import known_protocol_hashes
from tests.unit.test_leaderboard import FRACTIONS, INITS, TRACK, generate, leaderboard, make_fixture


class BoardParser(HTMLParser):
    """The sortable tables of a page: id → (attributes, rows, which rows are hidden), a row being its
    cells' data-sort values (the cells of tables nested in a cell are not the row's)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[dict, list[list[str | None]], list[bool]]] = {}
        self.stack: list[str | None] = []  # per open <table>: its id when it is a board, else None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            board = "board" in (a.get("class") or "").split()
            self.stack.append(a.get("id") if board else None)
            if board:
                self.tables[a["id"]] = (a, [], [])
        elif self.stack and self.stack[-1] is not None:
            _, rows, hidden = self.tables[self.stack[-1]]
            if tag == "tr" and "data-fraction" in a:
                rows.append([])
                hidden.append("hidden" in a)
            elif tag == "td" and rows:
                rows[-1].append(a.get("data-sort"))

    def handle_endtag(self, tag):
        if tag == "table" and self.stack:
            self.stack.pop()


def boards(page: str) -> dict[str, tuple[dict, list[list[str | None]], list[bool]]]:
    parser = BoardParser()
    parser.feed(page)
    return parser.tables


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(results, protocols, LEADERBOARD.md) of the fixture, generated once; the page is site_path of it."""
    root = tmp_path_factory.mktemp("site")
    results, protocols = make_fixture(root)
    out = root / "board" / "LEADERBOARD.md"
    generate(results, protocols, out)
    return results, protocols, out


def expected_tables(results: Path, protocols: Path) -> list[analysis.Table]:
    return analysis.tables(load_results(results).main, known_protocol_hashes(protocols))


def test_the_page_has_every_track_and_protocol_table_and_its_figures(site):
    results, protocols, out = site
    page = site_path(out).read_text(encoding="utf-8")
    tables = expected_tables(results, protocols)
    found = boards(page)
    assert sorted(found) == sorted(table_id(t.key) for t in tables) and len(found) == 2
    for _attrs, rows, _hidden in found.values():
        assert len(rows) == len(INITS) * len(FRACTIONS)
        assert all(len(r) == len(COLUMNS) for r in rows)
    assert f'id="track-{TRACK["id"]}"' in page
    ids = re.findall(r'\bid="([^"]*)"', page)
    assert len(ids) == len(set(ids))  # in-page links land on one element
    for part in ["Δ vs imagenet", "p (Holm)", "Across tasks", "Did pretraining learn?", "How to read track",
                 "How to reproduce a row", "Provenance", "make bench METHOD=barlowtwins PRESET=smoke",
                 "information-theoretic", '<select data-filter="fraction">', '<select data-filter="family">',
                 "<details><summary>lowest: "]:
        assert part in page, part
    # Every figure of the markdown page, embedded byte for byte.
    figures = sorted((out.parent / "figures").glob("*.png"))
    assert len(figures) == 4
    for png in figures:
        assert base64.b64encode(png.read_bytes()).decode() in page, png.name


def test_the_page_shows_the_markdown_numbers_and_marks(site):
    """The intervals and Δ cells of the markdown tables appear verbatim (bold and code aside)."""
    _, _, out = site
    page = site_path(out).read_text(encoding="utf-8")
    md = out.read_text(encoding="utf-8")
    cells = set()
    for line in md.split("## Provenance")[0].splitlines():
        if line.startswith("| ") and "[" in line:
            cells.update(c.strip().replace("**", "") for c in line.strip("|").split("|")[1:] if "[" in c)
    assert len(cells) > 20
    text = re.sub(r"</?strong>", "", page)
    missing = sorted(c for c in cells if c.replace("<", "&lt;") not in text)
    assert not missing, missing[:5]
    assert "▲" in md and md.count("▲") <= text.count("▲")


def test_the_page_needs_nothing_outside_the_file(site):
    _, _, out = site
    page = site_path(out).read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"<(link|iframe|object|embed)\b", page, re.IGNORECASE)
    assert not re.search(r"<script[^>]*\bsrc=", page, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, re.IGNORECASE)
    assert re.findall(r'<img [^>]*src="([^"]{0,22})', page) == ["data:image/png;base64,"] * 4


def test_same_results_give_identical_bytes(site, tmp_path):
    results, protocols, out = site
    other = tmp_path / "results"  # elsewhere, but where the page's folder finds it as `site` does: ../results
    for path in sorted(results.rglob("*.json"), reverse=True):
        target = other / path.relative_to(results)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    second = tmp_path / "board" / "LEADERBOARD.md"
    generate(other, protocols, second)
    assert site_path(second).read_bytes() == site_path(out).read_bytes()


def _check(capsys, results, protocols, out) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = leaderboard(["--results", str(results), "--out", str(out), "--protocols", str(protocols), "--check"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_check_fails_with_a_clear_message_on_a_modified_or_missing_page(site, tmp_path, capsys):
    results, protocols, out = site
    root = shutil.copytree(out.parent.parent, tmp_path / "root")  # the page and its results, moved together
    results, md = root / results.relative_to(out.parent.parent), root / out.relative_to(out.parent.parent)
    assert _check(capsys, results, protocols, md) == (0, "", "")

    page = site_path(md)
    page.write_text(page.read_text(encoding="utf-8").replace("Δ vs imagenet", "Δ vs ImageNet", 1), encoding="utf-8")
    rc, stdout, stderr = _check(capsys, results, protocols, md)
    assert rc == 1 and stdout == ""  # the markdown agrees: no diff printed
    assert f"{page} is not what the results give (first difference at line" in stderr
    assert "run `make leaderboard`" in stderr

    page.unlink()
    rc, _, stderr = _check(capsys, results, protocols, md)
    assert rc == 1 and f"{page} is missing" in stderr


# ---------------------------------------------------------------- in a real browser

def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = chromium()
    return subprocess.run([exe, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
                           f"--user-data-dir={cwd / 'profile'}", "--enable-logging=stderr", "--v=0", *args, url],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Uncaught" in line or "ERROR:CONSOLE" in line
            or ("CONSOLE" in line and "Error" in line)]


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no chromium / chromium-browser / google-chrome binary on PATH "
                                              "(.ci/run installs one when it can)")
def test_a_headless_browser_loads_the_page_from_disk_sorts_it_and_draws_it(site, tmp_path):
    from PIL import Image

    results, protocols, out = site
    table = next(t for t in expected_tables(results, protocols) if t.key.protocol == "finetune")
    tid, col = table_id(table.key), 3  # macro-F1, descending; and the 1 % rows of the baselines only
    url = site_path(out).resolve().as_uri() + f"#sort={tid}:{col}:desc&filter={tid}:family=baseline" \
        f"&filter={tid}:fraction=0.01"

    dom = browser(["--dump-dom"], url, tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not console_errors(dom.stderr), console_errors(dom.stderr)
    assert 'data-ready="1"' in dom.stdout  # the script ran to its end
    found = boards(dom.stdout)
    assert sorted(found) == sorted(table_id(t.key) for t in expected_tables(results, protocols))
    attrs, rows, hidden = found[tid]
    assert attrs.get("data-sorted") == f"{col}:desc"
    shown = [r for r, h in zip(rows, hidden, strict=True) if not h]
    assert sorted(r[0] for r in shown) == ["imagenet", "random"] and {r[2] for r in shown} == {"0.01"}
    assert not any(h for other, (_, _, hs) in found.items() if other != tid for h in hs)  # only that table
    values = [float(r[col]) for r in rows if r[col]]
    assert len(values) == len(rows) == len(INITS) * len(FRACTIONS)
    assert values == sorted(values, reverse=True)
    # the file's own order is by init then fraction, not by macro-F1
    source = boards(site_path(out).read_text(encoding="utf-8"))[tid][1]
    assert [float(r[col]) for r in source] != values

    shot = tmp_path / "shot.png"
    drawn = browser([f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars"],
                    site_path(out).resolve().as_uri(), tmp_path)
    assert drawn.returncode == 0 and shot.exists(), drawn.stderr[-2000:]
    assert not console_errors(drawn.stderr), console_errors(drawn.stderr)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1600, 1280)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    white = (pixels == 255).all(axis=2).mean()
    assert len(colours) > 50 and white < 0.97, (len(colours), white)

    # The console check sees an error when there is one.
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>null.x;</script></body></html>")
    assert console_errors(browser(["--dump-dom"], broken.resolve().as_uri(), tmp_path).stderr)


WIDTH_PROBE = """<script>
window.addEventListener("load", function () {
  var wide = Array.prototype.filter.call(document.querySelectorAll("table"), function (t) {
    return t.getBoundingClientRect().right > window.innerWidth;
  });
  document.body.setAttribute("data-wide", String(wide.length));
  document.querySelectorAll("input[data-more]").forEach(function (box) { box.click(); });
  document.body.setAttribute("data-shown", String(document.querySelectorAll("table.board.all").length));
});
</script></body>"""


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no chromium / chromium-browser / google-chrome binary on PATH "
                                              "(.ci/run installs one when it can)")
def test_every_table_fits_a_laptop_screen_and_the_board_shows_its_other_columns_on_request(site, tmp_path):
    _, _, out = site
    page = site_path(out).read_text(encoding="utf-8")
    assert page.count("<input type=\"checkbox\" data-more>") == page.count('<table class="board"') > 0
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", WIDTH_PROBE), encoding="utf-8")
    dom = browser(["--dump-dom", "--window-size=1280,1600"], probe.resolve().as_uri(), tmp_path)
    assert dom.returncode == 0 and not console_errors(dom.stderr), dom.stderr[-2000:]
    assert 'data-wide="0"' in dom.stdout  # nothing wider than 1280 px
    assert f'data-shown="{page.count(chr(60) + "table class=" + chr(34) + "board")}"' in dom.stdout
