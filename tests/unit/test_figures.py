"""The leaderboard's figures show the results: every figure drawn is caught as a matplotlib object
before it is saved, and its plotted data are compared with means computed here from the result
JSONs; the saved PNGs are checked to be real, non-blank pictures of the figure's size."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from leaderboard import figures
from leaderboard.load import load_results
from protocols.spec import known_protocol_hashes
from tests.unit.test_leaderboard import CLASSES, INITS, TRACK, make_fixture

BASELINES = {name for name, (kind, _, _) in INITS.items() if kind == "baseline"}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """(figures drawn: {file name: Figure}, PNG paths written, the results as plain dicts)."""
    root = tmp_path_factory.mktemp("figures")
    results, protocols = make_fixture(root)
    caught = {}
    save = figures._save

    def catch(fig, path):
        caught[path.name] = fig
        return save(fig, path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "_save", catch)
        written = figures.write_figures(load_results(results), known_protocol_hashes(protocols), root / "out")
    records = [json.loads(p.read_text()) for p in results.rglob("*.json")]
    return caught, written, [r for r in records if "ablation" not in r]


def _means(records, protocol: str, value) -> dict[str, dict[float, float]]:
    """init → fraction → mean over seeds of `value(record)`."""
    acc = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["job"]["protocol"] == protocol:
            acc[r["job"]["init"]][r["job"]["fraction"]].append(value(r))
    return {init: {f: float(np.mean(v)) for f, v in by_f.items()} for init, by_f in acc.items()}


@pytest.mark.parametrize("protocol", ["linear_probe", "finetune"])
def test_f1_vs_fraction_plots_each_init_mean_with_a_ci_band(drawn, protocol):
    caught, _, records = drawn
    fig = caught[figures.f1_vs_fraction_name(TRACK["id"], protocol)]
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == set(INITS)
    means = _means(records, protocol, lambda r: r["metrics"]["test"]["macro_f1"])
    for init, line in lines.items():
        fractions = sorted(means[init])
        np.testing.assert_allclose(line.get_xdata(), [100 * f for f in fractions])
        np.testing.assert_allclose(line.get_ydata(), [100 * means[init][f] for f in fractions], atol=1e-9)
        assert line.get_linestyle() == ("--" if init in BASELINES else "-")
    # One CI band per init (every init has >= 2 seeds at some fraction), each around its line.
    bands = ax.collections
    assert len(bands) == len(INITS)
    for band, line in zip(bands, ax.get_lines(), strict=True):
        vertices = band.get_paths()[0].vertices
        covered = 0
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            at_x = vertices[np.isclose(vertices[:, 0], x), 1]
            if at_x.size:  # a point with a single seed has no band
                assert at_x.min() < y < at_x.max(), (line.get_label(), x)
                covered += 1
        assert covered >= 2, line.get_label()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1 %", "10 %", "100 %"]


def test_per_class_heatmap_shows_the_mean_per_class_f1_of_the_named_init(drawn):
    caught, _, records = drawn
    fig = caught[figures.per_class_f1_name(TRACK["id"])]
    ax = fig.axes[0]
    init = ax.get_title().split("per-class F1 of ")[1].split(" ")[0]
    assert init in INITS
    values = np.asarray(ax.collections[0].get_array()).reshape(-1, len(CLASSES))
    rows = [(p, f) for p in ("finetune", "linear_probe") for f in (0.01, 0.1, 1.0)]
    want = [[100 * np.mean([r["metrics"]["test"]["per_class_f1"][c] for r in records
                            if (r["job"]["init"], r["job"]["protocol"], r["job"]["fraction"]) == (init, p, f)])
             for c in CLASSES] for p, f in rows]
    np.testing.assert_allclose(values, want, atol=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES


def test_every_written_png_is_a_non_blank_picture_of_its_figure(drawn):
    caught, written, _ = drawn
    assert {p.name for p in written} >= set(caught)
    for path in written:
        image = Image.open(path)
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), float)
        assert min(pixels.shape) >= 200 and pixels.std() > 10 and (pixels < 100).mean() > 0.005, path.name
        if path.name in caught:  # saved at the figure's size (bbox_inches="tight" trims only margins)
            w, h = caught[path.name].get_size_inches() * figures.DPI
            assert 0.6 * w <= image.width <= 1.3 * w and 0.6 * h <= image.height <= 1.3 * h, path.name


def test_a_continued_row_wears_its_method_s_colour_in_its_own_line_style():
    """`simclr ← imagenet` pairs with `simclr` by colour and differs by line and marker; no two methods of the
    seven built-in ones and the two baselines share a colour (they did when each init took the next colour)."""
    inits = ["ae", "ae@imagenet", "barlowtwins", "barlowtwins@imagenet", "byol", "byol@imagenet", "moco",
             "moco@imagenet", "simclr", "simclr@imagenet", "simsiam", "simsiam@imagenet", "vicreg", "vicreg@imagenet",
             "imagenet", "random"]
    colors = figures._colors(inits)
    assert colors["simclr@imagenet"] == colors["simclr"] and colors["vicreg@imagenet"] == colors["vicreg"]
    plain = [i for i in inits if "@" not in i]
    assert len({colors[i] for i in plain}) == len(plain) == 9
    baselines = {"imagenet", "random"}
    assert figures._style("simclr", baselines) == {"linestyle": "-", "marker": "o"}
    assert figures._style("simclr@imagenet", baselines) == figures.CONTINUED_STYLE
    assert figures._style("imagenet", baselines)["linestyle"] == "--"
