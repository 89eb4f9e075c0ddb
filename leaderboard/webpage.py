"""leaderboard/site/index.html: the leaderboard as one self-contained HTML page (inline CSS and JS,
figures as base64 data URIs), to open from disk with no server and no network.

Every number and mark comes from the markdown renderer's own functions (`render`, over `analysis`):
the page shows the same cells, Δ, Holm-adjusted p and ▲/▼ as LEADERBOARD.md, arranged so that each
protocol's table sorts by any column and filters by label fraction and method family. The parts of a
track with no interactive form (across tasks, diagnostics, how to read, reproduce, provenance,
ablation, learning curves, cross-scanner) are the markdown sections themselves, converted line by line. Same results → same bytes.
"""
from __future__ import annotations

import base64
import html
import math
import re

import pandas as pd

from leaderboard import analysis, figures, render
from leaderboard.load import Results
from leaderboard.results import fraction_title, init_title

SITE_DIR = "site"
SITE_NAME = "index.html"

# ---------------------------------------------------------------- markdown (the renderer's subset) → HTML

_LINK = re.compile(r"\[([^\]]+)\]\((#[^)]*)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")


def inline(text: str) -> str:
    """Inline markdown of the renderer (`code`, **bold**, [text](#anchor), <br>) as escaped HTML."""
    parts = []
    for piece in str(text).split("<br>"):
        s = html.escape(piece, quote=True)
        s = _LINK.sub(r'<a href="\2">\1</a>', s)
        s = _CODE.sub(r"<code>\1</code>", s)
        s = _BOLD.sub(r"<strong>\1</strong>", s)
        parts.append(s)
    return "<br>".join(parts)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image(alt: str, name: str, pngs: dict[str, bytes]) -> str:
    if name not in pngs:
        return f'<p class="missing">figure {html.escape(name)} was not drawn</p>'
    return f'<figure><img alt="{html.escape(alt, quote=True)}" src="{data_uri(pngs[name])}"></figure>'


def _table_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(lines: list[str], pngs: dict[str, bytes]) -> list[str]:
    """Headings, paragraphs, bullet lists, GitHub tables, images and raw <details> lines."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            text = line[level:].strip()
            out.append(f'<h{level} id="{render.anchor(text)}">{inline(text)}</h{level}>')
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            head, rows = _table_cells(block[0]), [_table_cells(r) for r in block[2:]]
            out.append('<table class="plain"><thead><tr>' + "".join(f"<th>{inline(h)}</th>" for h in head)
                       + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</tbody></table>")
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
        elif (m := _IMAGE.match(line.strip())) is not None:
            out.append(image(m.group(1), m.group(2).removeprefix(render.FIGURES_DIR + "/"), pngs))
            i += 1
        elif line.startswith("<details") or line.startswith("</details"):
            out.append(line)
            i += 1
        else:
            out.append(f"<p>{inline(line)}</p>")
            i += 1
    return out


# ---------------------------------------------------------------- the interactive per-protocol table

COLUMNS = [  # (header, sort type)
    ("init", "text"), ("family", "text"), ("label fraction", "num"), ("macro-F1 (%)", "num"),
    ("Δ vs " + analysis.REFERENCE_INIT, "num"), ("p (Holm)", "num"), ("balanced accuracy (%)", "num"),
    ("accuracy (%)", "num"), ("per-class F1 (%)", "num"), ("provenance", "text"), ("reproduce", "text"),
]


def table_id(key: analysis.TableKey) -> str:
    raw = f"{key.track}-{key.protocol}-{key.protocol_hash[:12]}"
    return "t-" + re.sub(r"[^A-Za-z0-9_-]", "-", raw)


def family(runs: pd.DataFrame, init: str) -> str:
    row = runs[runs["init"] == init].iloc[0]
    if row["init_kind"] == "baseline":
        return "baseline"
    return row["family"] if isinstance(row["family"], str) and row["family"] else "—"


def _num(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


# The board's columns from this index on (balanced accuracy, accuracy, per-class F1, provenance, reproduce) are
# shown by a checkbox above the table: without them it fits a laptop screen (1280 px).
MORE_FROM = 6


def _more(cell: str) -> str:
    """`cell` (a <td> or <th>) as one of the columns the board shows on request (`MORE_FROM`)."""
    tag, rest = cell.split(">", 1)
    if ' class="' in tag:
        return tag.replace(' class="', ' class="more ', 1) + ">" + rest
    return f'{tag} class="more">{rest}'


def _td(content: str, sort: str | None = None, cls: str = "") -> str:
    attrs = f' data-sort="{html.escape(sort, quote=True)}"' if sort is not None else ""
    attrs += f' class="{cls}"' if cls else ""
    return f"<td{attrs}>{content}</td>"


def per_class_cell(table: analysis.Table, init: str, fraction: float) -> str:
    pcf = analysis.per_class_f1(table.runs, init)
    key = (table.key.protocol, fraction)
    if key not in pcf.index:
        return _td("—", "")
    row = pcf.loc[key]
    worst = row.idxmin()
    body = "".join(f"<tr><td>{html.escape(str(c))}</td><td>{render.pct(v)}</td></tr>" for c, v in row.items())
    return _td(f"<details><summary>lowest: {html.escape(str(worst))} {render.pct(row[worst])}</summary>"
               f'<table class="inner"><tr><th>class</th><th>F1</th></tr>{body}</table></details>',
               _num(row[worst]))


def provenance_cell(cell_runs: pd.DataFrame) -> str:
    """What the runs of one cell were produced with (the per-track provenance, restricted to them)."""
    code = [f"{sha[:10]}{' (dirty)' if dirty else ''}"
            for sha, dirty in zip(cell_runs["git_sha"], cell_runs["git_dirty"], strict=True)]
    items = [("protocol", f"v{cell_runs['protocol_version'].iloc[0]} `{cell_runs['protocol_hash'].iloc[0][:12]}`"),
             ("code (git SHA)", render._distinct(code, lambda v: f"`{v}`")),
             ("devices", render._distinct(cell_runs["device"])),
             ("machines", render._distinct(cell_runs["machine"])),
             ("downstream data", render._distinct(cell_runs["fp_downstream"], lambda v: f"`{str(v)[:12]}`")),
             ("pretraining data", render._distinct(cell_runs["fp_pretrain"].dropna(),
                                                   lambda v: f"`{str(v)[:12]}`") or "—"),
             ("wall time", f"{cell_runs['wall_time_s'].sum():.0f} s over {render._runs(len(cell_runs))}")]
    shas = sorted(set(code))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{inline(v)}</td></tr>" for k, v in items)
    return _td(f'<details><summary>{html.escape(", ".join(shas))}</summary><table class="inner">{body}</table>'
               "</details>", ", ".join(shas))


def protocol_table(table: analysis.Table, track_deltas: dict) -> list[str]:
    tid = table_id(table.key)
    metrics = {m: analysis.summary(table, m) for m in ("macro_f1", "balanced_accuracy", "accuracy")}
    best = {m: render.column_best(table, cells) for m, cells in metrics.items()}
    has_ref = table.current and analysis.REFERENCE_INIT in set(table.runs["init"])
    rows = []
    families = set()
    for init in table.inits:
        fam = family(table.runs, init)
        families.add(fam)
        command = render.reproduce_command(table.runs, init)
        for f in table.fractions:
            cells = {m: metrics[m].get((init, f)) for m in metrics}
            tds = [_td(inline(render.init_label(table.runs, init)), init), _td(html.escape(fam), fam),
                   _td(fraction_title(f), _num(f), "num")]
            c = cells["macro_f1"]
            tds.append(_td(inline(render.cell_text(c, best["macro_f1"][f])), _num(c and c.interval.mean), "num"))
            d = track_deltas.get((analysis.REFERENCE_INIT, table.key.protocol, init, f)) if has_ref else None
            if init == analysis.REFERENCE_INIT or not has_ref:
                tds += [_td("—", ""), _td("—", "")]
            else:
                tds.append(_td(inline(render.delta_cell(d)), _num(d and d.comparison.diff.mean), "num"))
                p = d.p_holm if d is not None and d.tested else None
                tds.append(_td(render.p_value(p) if p is not None else "—", _num(p), "num"))
            for m in ("balanced_accuracy", "accuracy"):
                c = cells[m]
                tds.append(_td(inline(render.cell_text(c, best[m][f])), _num(c and c.interval.mean), "num"))
            runs = analysis.cell_runs(table.runs, init, f)
            if runs.empty:
                tds += [_td("—", ""), _td("—", "")]
            else:
                tds += [per_class_cell(table, init, f), provenance_cell(runs)]
            tds.append(_td(inline(command), command))
            tds = tds[:MORE_FROM] + [_more(td) for td in tds[MORE_FROM:]]
            rows.append(f'<tr data-fraction="{_num(f)}" data-family="{html.escape(fam, quote=True)}">'
                        + "".join(tds) + "</tr>")
    fraction_opts = "".join(f'<option value="{_num(f)}">{fraction_title(f)}</option>' for f in table.fractions)
    family_opts = "".join(f'<option value="{html.escape(v, quote=True)}">{html.escape(v)}</option>'
                          for v in sorted(families))
    mark = render.score_mark(table.runs)  # splits not subject-disjoint: beside every score column
    cells = [f'<th data-type="{kind}" data-col="{i}" tabindex="0" aria-sort="none">'
             f'{html.escape(name + (mark if kind == "num" and "%" in name else ""))}</th>'
             for i, (name, kind) in enumerate(COLUMNS)]
    head = "".join(cells[:MORE_FROM] + [_more(th) for th in cells[MORE_FROM:]])
    more = ", ".join(name for name, _ in COLUMNS[MORE_FROM:])
    return [f'<div class="controls" data-for="{tid}">'
            f'<label>label fraction <select data-filter="fraction"><option value="">all</option>{fraction_opts}'
            f'</select></label> <label>method family <select data-filter="family"><option value="">all</option>'
            f'{family_opts}</select></label> <label><input type="checkbox" data-more> more columns ({more})</label> '
            '<span class="hint">click a column header to sort</span></div>',
            f'<div class="scroll"><table class="board" id="{tid}"><thead><tr>{head}</tr></thead><tbody>', *rows,
            "</tbody></table></div>"]


def table_html(table: analysis.Table, track_deltas: dict, pngs: dict[str, bytes], tried: int = 0) -> list[str]:
    """One protocol table of a track; `tried`: the continued recipes compared on the track (for its continued
    rows' note)."""
    k = table.key
    title = f"{k.protocol} (v{k.protocol_version}, hash `{k.protocol_hash[:12]}`)"
    out = [f'<h3 id="{render.anchor(title)}">{inline(title)}</h3>']
    if not table.current:
        out.append(f"<p>Results of an earlier version of <code>{html.escape(k.protocol)}</code>: shown apart, left "
                   "out of the tests and the summary.</p>")
    out.append("<p>Test metrics (%): mean [95 % interval] (pretraining runs × downstream seeds); best mean per label "
               "fraction in bold; † = interval over the downstream seeds of a single pretraining run. Δ vs "
               f"{analysis.REFERENCE_INIT}: paired, Holm-adjusted p, ▲/▼ = adjusted p &lt; 0.05. Statistics: "
               f'<a href="#{render.anchor("How to read track " + k.track)}">how to read this track</a>.</p>')
    out += protocol_table(table, track_deltas)
    if table.current and analysis.SIGNAL_INIT in set(table.runs["init"]):
        signal = render.delta_table(table, track_deltas, analysis.SIGNAL_INIT)
        if signal:
            out += markdown_to_html([f"Did pretraining help at all? Δ of each SSL method vs "
                                     f"`{analysis.SIGNAL_INIT}`, paired and Holm-adjusted as above.", ""]
                                    + signal, pngs)
    if table.current:
        out += markdown_to_html(render.continued_delta_lines(table, track_deltas, tried), pngs)
    out += markdown_to_html(render.subject_note(table.runs), pngs)
    if table.current:
        out.append(image(f"macro-F1 vs label fraction, {k.protocol}",
                         figures.f1_vs_fraction_name(k.track, k.protocol), pngs))
    return out


def track_html(page: render.Page, track: str, pngs: dict[str, bytes]) -> list[str]:
    runs = page.results.main[page.results.main["track"] == track]
    track_tables = [t for t in page.tables if t.key.track == track]
    track_deltas = analysis.deltas(track_tables, "macro_f1")
    first = runs.iloc[0]
    out = ['<section class="track">', *markdown_to_html(
        [f"## Track `{track}`",
         f"Pretraining data `{first['pretrain_dataset']}`, downstream data `{first['downstream_dataset']}`, "
         f"backbone `{first['backbone']}`, {first['resolution']} px, preset `{first['preset']}`; {len(runs)} runs."]
        + render.answer_section(track_tables, track_deltas) + render.data_card_section(runs), pngs)]
    tried = render.recipes_tried(page, track)
    for table in track_tables:
        out += table_html(table, track_deltas, pngs, tried)
    ranking = analysis.ranking(track_tables)
    rest = (render.ranking_section(track, ranking) + render.diagnostics_section(runs)
            + render.per_class_section(track, ranking) + render.statistics_note(track, runs, track_deltas)
            + ["### How to reproduce a row", ""]
            + render.markdown_table([[init_title(i), render.reproduce_command(runs, i)] for i in analysis.init_order(runs)],
                                    ["init", "command"]))
    out += markdown_to_html(rest, pngs)
    return out + ["</section>"]


# ---------------------------------------------------------------- the page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1400px;
padding:1rem 1.5rem;color:#1b1f24;background:#fff;line-height:1.45}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;background:#f1f3f5;padding:0 .2em;border-radius:3px}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;vertical-align:top;text-align:left}
thead th{background:#eef2f6}
table.board thead th{cursor:pointer;user-select:none;white-space:nowrap}
table.board thead th[aria-sort=ascending]::after{content:" \\25B2"}
table.board thead th[aria-sort=descending]::after{content:" \\25BC"}
table.board td.num{text-align:right;white-space:nowrap}
table.board:not(.all) .more{display:none}
table.board tbody tr:nth-child(even){background:#f8fafc}
table.inner{margin:.3rem 0;font-size:.8rem}
.controls{margin:.4rem 0;font-size:.9rem}.controls select{margin-right:1rem}.hint{color:#57606a}
figure{margin:.5rem 0 1.5rem}figure img{max-width:100%;height:auto;border:1px solid #d0d7de}
section.track{border-top:2px solid #d0d7de;margin-top:2rem}
details summary{cursor:pointer}
.scroll{overflow-x:auto}
"""

JS = """
(function () {
  "use strict";
  function key(td) { var v = td.getAttribute("data-sort"); return v === null ? td.textContent : v; }
  function sortTable(table, col, dir) {
    var th = table.tHead.rows[0].cells[col];
    if (!th) { return; }
    var numeric = th.getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      if (numeric) { return dir * (parseFloat(x) - parseFloat(y)); }
      return dir * (x < y ? -1 : (x > y ? 1 : 0));
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    table.setAttribute("data-sorted", col + ":" + (dir > 0 ? "asc" : "desc"));
  }
  function filterTable(controls) {
    var table = document.getElementById(controls.getAttribute("data-for"));
    var want = {};
    Array.prototype.forEach.call(controls.querySelectorAll("select[data-filter]"), function (s) {
      want[s.getAttribute("data-filter")] = s.value;
    });
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      r.hidden = Object.keys(want).some(function (k) { return want[k] !== "" && r.getAttribute("data-" + k) !== want[k]; });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.board"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      function toggle() { sortTable(table, col, th.getAttribute("aria-sort") === "ascending" ? -1 : 1); }
      th.addEventListener("click", toggle);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll(".controls"), function (controls) {
    var more = controls.querySelector("input[data-more]");
    if (more) {
      more.addEventListener("change", function () {
        document.getElementById(controls.getAttribute("data-for")).classList.toggle("all", more.checked);
      });
    }
    Array.prototype.forEach.call(controls.querySelectorAll("select[data-filter]"), function (s) {
      s.addEventListener("change", function () { filterTable(controls); });
    });
  });
  // On load, #sort=<table id>:<column index>[:desc] sorts a table and #filter=<table id>:<fraction|family>=<value>
  // filters one, joined by "&" (a link to a sorted, filtered view).
  location.hash.replace(/^#/, "").split("&").forEach(function (part) {
    part = decodeURIComponent(part);
    var m = /^sort=([A-Za-z0-9_-]+):([0-9]+)(:desc)?$/.exec(part);
    var table = m && document.getElementById(m[1]);
    if (table) { sortTable(table, parseInt(m[2], 10), m[3] ? -1 : 1); }
    var f = /^filter=([A-Za-z0-9_-]+):(fraction|family)=(.*)$/.exec(part);
    var controls = f && document.querySelector('.controls[data-for="' + f[1] + '"]');
    var select = controls && controls.querySelector('select[data-filter="' + f[2] + '"]');
    if (select) { select.value = f[3]; filterTable(controls); }
  });
  document.documentElement.setAttribute("data-ready", "1");
}());
"""


def unique_heading_ids(lines: list[str]) -> list[str]:
    """A repeated heading id gets -1, -2, … as GitHub numbers them (the first keeps the plain anchor)."""
    seen: dict[str, int] = {}

    def number(m: re.Match) -> str:
        base = m.group(2)
        n = seen.get(base, 0)
        seen[base] = n + 1
        return f'{m.group(1)}{base}{"" if n == 0 else f"-{n}"}"'

    return [re.sub(r'^(<h[1-6] id=")([^"]*)"', number, line) for line in lines]


def render_site(results: Results, known_hashes: dict[str, str], pngs: dict[str, bytes],
                results_label: str = render.REPOSITORY_RESULTS) -> str:
    """The page's HTML; `pngs` are the figures by file name (as `figures.write_figures` draws them)."""
    page = render.Page(results, known_hashes, results_label)
    body = markdown_to_html(render.header_section(page), pngs)
    for track in page.tracks:
        body += track_html(page, track, pngs)
    body += markdown_to_html(render.ablation_section(page) + render.learning_curve_section(page) + render.positives_section(page)
                             + render.continued_recipe_section(page) + render.cross_scanner_section(page) + render.provenance_section(page), pngs)
    body = unique_heading_ids(body)
    return "\n".join(['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      "<title>sslbench leaderboard</title>", f"<style>{CSS}</style>", "</head>", "<body>",
                      *body, f"<script>{JS}</script>", "</body>", "</html>"]) + "\n"
