"""The `real` preset: public data found through the download folder, its two pretraining pools (POCUS clips,
or the downstream training patients' own images) as two tracks, and the few-labels rule it states."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.data.splits import class_quota, label_fraction
from benchmark.errors import UserError
from benchmark.track import track_context
from protocols.presets import PRESETS, load_preset
from protocols.spec import known_protocol_hashes, load_protocol
from tests.unit.test_sources_african import make_african_fetal_planes


def _context(tmp_path, monkeypatch, **kw):
    monkeypatch.setenv("SSLBENCH_DATA_DIR", str(tmp_path / "data"))
    return track_context("real", results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                         cache_dir=str(tmp_path / "cache"), new_results=False, **kw)


def test_the_preset_names_its_data_by_the_download_folder_and_says_how_to_fetch_it(tmp_path, monkeypatch):
    assert "real" in PRESETS
    preset = load_preset("real")
    specs = [preset["data"][role]["spec"] for role in ("pretrain", "downstream")]
    assert specs == ["videos:{downloads}/pocus_videos", "african_fetal_planes:{downloads}/african_fetal_planes"]
    with pytest.raises(UserError) as err:
        _context(tmp_path, monkeypatch)
    message = str(err.value)
    assert str(tmp_path / "data" / "pocus_videos") in message and "sslbench data download pocus_videos" in message
    # The downstream folder alone missing names that one.
    (tmp_path / "data" / "pocus_videos").mkdir(parents=True)
    with pytest.raises(UserError, match="sslbench data download african_fetal_planes"):
        _context(tmp_path, monkeypatch)


def test_the_in_domain_pool_holds_the_training_patients_images_only_unlabelled(tmp_path, monkeypatch):
    make_african_fetal_planes(tmp_path / "data" / "african_fetal_planes", patients=4)  # every image its own grey
    ctx = _context(tmp_path, monkeypatch, dataset="downstream:train")
    assert ctx.track.id == "downstream-train+african_fetal_planes-efficientnet_lite0-64px-real"
    # The track records the specs as written, not this machine's folder: its keys do not depend on it.
    assert ctx.track.downstream_dataset == "african_fetal_planes:{downloads}/african_fetal_planes"
    down, pool = ctx.downstream_cache(), ctx.pretrain_cache()
    split = down.index.set_index("subject_id")["split"].groupby(level=0).first()
    held_back = set(split.index[split != "train"])
    assert {"val", "test"} <= set(split) and held_back
    assert not set(pool.index["subject_id"]) & held_back  # no validation or test patient in the pool
    assert set(pool.index["subject_id"]) == set(split.index[split == "train"])
    assert (pool.index["label"] == -1).all() and (pool.index["split"] == "pretrain").all()
    # The pool holds copies of exactly the train images (each test image's pixels are its own, so a
    # validation or test image in the pool would show here), and nothing else.
    train = down.split_positions("train")
    assert len(pool.frames) == len(pool.index) == len(train) and np.array_equal(pool.frames, down.frames[train])
    others = {down.frames[i].tobytes() for i in np.flatnonzero(down.index["split"] != "train")}
    assert not others & {f.tobytes() for f in pool.frames}
    assert pool.fingerprint not in (down.fingerprint, "") and pool.card()["spec"] == "downstream:train"


def test_the_two_pools_are_two_tracks(tmp_path, monkeypatch):
    make_african_fetal_planes(tmp_path / "data" / "african_fetal_planes", patients=4)
    (tmp_path / "data" / "pocus_videos").mkdir(parents=True)
    pocus = _context(tmp_path, monkeypatch).track
    indomain = _context(tmp_path, monkeypatch, dataset="downstream:train").track
    assert pocus.id == "videos-pocus_videos+african_fetal_planes-efficientnet_lite0-64px-real"
    assert pocus.id != indomain.id and pocus.record() != indomain.record()
    with pytest.raises(UserError, match="takes no settings"):
        from benchmark.track import SourceSettings

        _context(tmp_path, monkeypatch, dataset="downstream:train",
                 pretrain=SourceSettings(options={"stride": 5}, flags={"stride": "--stride"}))


# ---- few labels --------------------------------------------------------------------------------------

def _train_index(counts: dict[int, int]) -> pd.DataFrame:
    rows = [(f"s{c}-{i // 2}", c) for c, n in counts.items() for i in range(n)]
    return pd.DataFrame({"subject_id": [s for s, _ in rows], "label": [c for _, c in rows], "split": "train"})


def test_the_few_labels_rule_keeps_every_class_and_is_what_it_says():
    # The African set's train split is ~161 images of 4 planes: at 1 % each plane keeps 1 image, not 0.
    counts = {0: 45, 1: 46, 2: 44, 3: 26}
    index = _train_index(counts)
    for fraction, per_class in ((0.01, {0: 1, 1: 1, 2: 1, 3: 1}), (0.1, {0: 5, 1: 5, 2: 5, 3: 3}),
                                (1.0, counts)):
        chosen = index.iloc[label_fraction(index, fraction, seed=3)]
        assert chosen["label"].value_counts().to_dict() == per_class
        assert per_class == {c: class_quota(n, fraction) for c, n in counts.items()}
    # A higher floor (a protocol's [labels] min_per_class) raises the small fractions only, never past a class's size.
    chosen = index.iloc[label_fraction(index, 0.01, seed=3, min_per_class=3)]
    assert chosen["label"].value_counts().to_dict() == {0: 3, 1: 3, 2: 3, 3: 3}
    assert class_quota(2, 0.01, min_per_class=3) == 2
    assert set(label_fraction(index, 0.01, 3)) <= set(label_fraction(index, 0.01, 3, min_per_class=3))
    with pytest.raises(UserError, match="min_per_class must be >= 1"):
        label_fraction(index, 0.01, 3, min_per_class=0)


def test_the_real_preset_states_the_rule_and_the_other_tracks_keep_their_keys():
    preset = load_preset("real")
    for name in ("linear_probe", "knn", "finetune"):
        stated = preset["protocols"][name]["labels"]
        assert stated == {"min_per_class": 1}
        spec = load_protocol(name, preset["protocols"][name])
        bare = load_protocol(name, {k: v for k, v in preset["protocols"][name].items() if k != "labels"})
        assert spec.hash == bare.hash == known_protocol_hashes()[name]  # the file is unchanged
        assert spec.key != bare.key  # the real track's jobs carry the rule in their keys
        assert "labels" not in load_protocol(name).settings  # no other track's settings (or keys) gain it


def test_the_reproduce_line_names_data_only_where_the_runs_did_not_use_their_presets_own():
    """`make bench … PRESET=real` rebuilds the POCUS pool with the preset's own options; a DATA= naming
    the same spec would drop them. DATA= stays for the in-domain pool and for any other data."""
    import pandas as pd

    from leaderboard.render import reproduce_command

    def line(preset, data, init="simclr"):
        return reproduce_command(pd.DataFrame([{"init": init, "preset": preset, "pretrain_dataset": data}]), init)

    assert line("real", "videos:{downloads}/pocus_videos") == "`make bench METHOD=simclr PRESET=real`"
    assert line("real", "downstream:train") == "`make bench METHOD=simclr PRESET=real DATA=downstream:train`"
    assert line("cpu", "synthetic", "simclr@imagenet") == "`make bench METHOD=simclr PRESET=cpu START=imagenet`"
    assert line("my-preset", "videos:/data/clips") == "`make bench METHOD=simclr PRESET=my-preset DATA=videos:/data/clips`"


def test_the_real_track_continues_from_imagenet_with_the_cpu_track_s_recipe_unchanged():
    """The recipe was chosen on the cpu track's validation split; the real track must not be tuned to itself."""
    from methods.registry import available_methods
    from protocols.presets import continued_recipe, load_preset, resolve_preset

    cpu, real = (load_preset(resolve_preset(name)) for name in ("cpu", "real"))
    chosen = {m: continued_recipe(cpu, m) for m in available_methods()}
    assert all(chosen.values()) and {m: continued_recipe(real, m) for m in available_methods()} == chosen
