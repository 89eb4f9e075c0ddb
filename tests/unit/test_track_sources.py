"""A track's two sources take their own settings (`--stride`/`-o` for the pretraining source, `-O` for
the downstream one), each refused only by the source it is given to; skipped files are counted in
the results' provenance; track ids read as the data they were made from."""
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.track import SourceSettings, track_context
from leaderboard.results import validate_result
from protocols.grid import build_grid, dataset_name, make_track
from tests.unit.test_sources_images import make_fetal_planes_db
from tests.unit.test_sources_videos import encode_clip

TINY = Path(__file__).parents[1] / "e2e" / "tiny_preset.toml"


@pytest.fixture
def real_data(tmp_path) -> tuple[Path, Path]:
    clips = tmp_path / "us_videos"
    for k in range(2):
        encode_clip(clips / f"pat{k}" / "a.mp4", n_frames=6, seed=k)
    return clips, make_fetal_planes_db(tmp_path / "FETAL_PLANES_ZENODO", patients=8)


def _ctx(tmp_path, clips, fpdb, pre: dict | None = None, down: dict | None = None, **kw):
    return track_context(str(TINY), dataset=f"videos:{clips}", downstream=f"fetal_planes_db:{fpdb}",
                         pretrain=SourceSettings(pre or {}, {k: f"--{k.replace('_', '-')}" for k in pre or {}}),
                         downstream_settings=SourceSettings(down or {}, {k: f"-O {k}=.." for k in down or {}}),
                         results_dir=tmp_path / "results", runs_dir=tmp_path / "runs", **kw)


def test_each_source_gets_its_own_settings(tmp_path, real_data):
    clips, fpdb = real_data
    ctx = _ctx(tmp_path, clips, fpdb, pre={"stride": 5, "crop": "auto", "max_frames": 4},
               down={"label_column": "Brain_plane", "crop": "auto"})
    assert (ctx.pretrain_source.stride, ctx.pretrain_source.crop, ctx.pretrain_source.max_frames) == (5, "auto", 4)
    assert (ctx.downstream_source.label_column, ctx.downstream_source.crop) == ("Brain_plane", "auto")
    assert not hasattr(ctx.downstream_source, "stride")


def test_a_setting_is_refused_only_by_the_source_it_is_given_to(tmp_path, real_data):
    clips, fpdb = real_data
    with pytest.raises(UserError) as err:
        _ctx(tmp_path, clips, fpdb, down={"stride": 5})
    msg = str(err.value)
    assert "-O stride" in msg and "`fetal_planes_db`" in msg and "label_column" in msg and "downstream source" in msg
    with pytest.raises(UserError) as err:
        _ctx(tmp_path, clips, fpdb, pre={"label_column": "Plane"})
    msg = str(err.value)
    assert "--label-column" in msg and "`videos`" in msg and "stride" in msg and "-O KEY=VALUE" in msg


def test_cli_names_the_flag_the_source_and_what_it_accepts(tmp_path, real_data, capsys):
    clips, fpdb = real_data
    code = main(["bench", "--method", "vicreg", "--preset", str(TINY), "--dataset", f"videos:{clips}",
                 "--downstream", f"fetal_planes_db:{fpdb}", "-O", "stride=5",
                 "--results-dir", str(tmp_path / "r"), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "-O stride=5 does not apply to `fetal_planes_db`" in err and "label_column" in err


def test_settings_of_a_source_serving_both_roles_reach_both(tmp_path):
    ctx = track_context(str(TINY), pretrain=SourceSettings({"noise": 0.25}, {}, "skip"),
                        results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    assert ctx.pretrain_source.noise == ctx.downstream_source.noise == 0.25
    assert ctx.pretrain_on_error == ctx.downstream_on_error == "skip"


def test_a_missing_image_names_the_downstream_flag_and_skip_is_counted_in_provenance(tmp_path, real_data, capsys):
    clips, fpdb = real_data
    missing = next((fpdb / "Images").glob("*.png"))
    missing.unlink()
    code = main(["bench", "--method", "vicreg", "--preset", str(TINY), "--dataset", f"videos:{clips}",
                 "--downstream", f"fetal_planes_db:{fpdb}", "--results-dir", str(tmp_path / "r"),
                 "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and missing.stem in err and "--downstream-on-error skip" in err

    ctx = _ctx(tmp_path, clips, fpdb, cache_dir=str(tmp_path / "cache"))
    ctx.downstream_on_error = "skip"
    downstream = ctx.downstream_cache()
    assert "1 file skipped" in capsys.readouterr().err
    from protocols.grid import imagenet_init

    jobs = build_grid([imagenet_init(ctx.preset["backbone"], 0)], ctx.protocols, ctx.track, downstream,
                      ctx.results_dir)
    assert jobs and all(j.skipped_files == {"downstream": 1} for j in jobs)
    # The field is optional (older results stay valid) and a result carrying it validates.
    committed = next(Path(__file__).parents[2].joinpath("leaderboard", "results").rglob("*.json"))
    record = json.loads(committed.read_text())
    for optional in ("skipped_files", "data"):  # as results written before they were recorded
        record["provenance"].pop(optional, None)
    validate_result(record, str(committed))
    record["provenance"]["skipped_files"] = jobs[0].skipped_files
    validate_result(record, str(committed))
    record["provenance"]["skipped_files"] = {"downstream": -1}
    with pytest.raises(ValueError, match="skipped_files/downstream"):
        validate_result(record, str(committed))


def test_track_ids_name_kinds_and_stems_never_extensions(tmp_path):
    manifest = tmp_path / "fpdb.csv"
    manifest.write_text("path,label\n")
    assert dataset_name(f"videos:{tmp_path / 'us_videos'}/") == "videos-us_videos"
    assert dataset_name(f"csv:{manifest}") == "csv-fpdb"
    assert dataset_name("hdf5:/data/clips.v2.h5") == "hdf5-clips_v2"
    assert dataset_name("african_fetal_planes:/data/african_fetal_planes") == "african_fetal_planes"  # as downloaded
    track = make_track(f"videos:{tmp_path / 'us_videos'}", f"csv:{manifest}", "efficientnet_lite0", 48, "smoke")
    assert track.id == "videos-us_videos+csv-fpdb-efficientnet_lite0-48px-smoke"
    # The simulator's ids are unchanged: committed results live under them.
    assert make_track("synthetic", "synthetic", "efficientnet_lite0", 48, "smoke").id == \
        "synthetic-efficientnet_lite0-48px-smoke"
    assert make_track("synthetic", "fetal_planes_db:/d", "resnet50", 256, "paper").id == \
        "synthetic+fetal_planes_db-resnet50-256px-paper"


def test_track_name_override(tmp_path):
    ctx = track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                        track_name="my-clinic.v1")
    assert ctx.track.id == "my-clinic.v1" and ctx.track.pretrain_dataset == "synthetic"
    with pytest.raises(UserError, match="--track '../x'"):
        track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs", track_name="../x")
