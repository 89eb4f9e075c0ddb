"""`sslbench session` pieces: what counts as done without a checkpoint, which checkpoints are kept
for the next session, and the hard stop of a step at the session's end."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchmark.session import Session, Unit, _keep_checkpoints, count_done, planned_results
from benchmark.steps import last_error_line, run_step
from benchmark.track import track_context

TINY = Path(__file__).parents[1] / "e2e" / "tiny_preset.toml"


def _ctx(tmp_path: Path):
    return track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                         cache_dir=str(tmp_path / "cache"))


def _write(path: Path, track: str, spec, overrides=None, **changes) -> None:
    record = {"track": {"id": track}, "protocol": {"name": spec.name, "hash": spec.hash},
              "train": {} if overrides is None else {"protocol_overrides": overrides}}
    record.update(changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_done_means_a_result_of_the_current_protocol_and_overrides_on_this_track(tmp_path):
    ctx = _ctx(tmp_path)
    specs = {s.name: s for s in ctx.protocols}
    paths = planned_results(ctx, "vicreg")
    # tiny preset, one pretraining seed: linear_probe and knn 2 seeds at 10 % + 1 at 100 % each, finetune
    # 2 fractions × 1 seed
    assert len(paths) == 8 and len(set(paths)) == 8
    assert all(p.is_relative_to(ctx.results_dir / ctx.track.id / "vicreg") for p in paths)
    assert count_done(paths, ctx) == 0

    def spec_of(path: Path):
        return specs[path.relative_to(ctx.results_dir).parts[2]]

    for path in paths:
        spec = spec_of(path)
        _write(path, ctx.track.id, spec, spec.overrides or None)
    assert count_done(paths, ctx) == 8
    # A result made when the track ran other seeds is the same job: it counts.
    _write(paths[4], ctx.track.id, spec_of(paths[4]), {**spec_of(paths[4]).overrides, "seeds": [7, 8, 9]})
    assert count_done(paths, ctx) == 8
    old = spec_of(paths[0])
    _write(paths[0], ctx.track.id, old, old.overrides or None, protocol={"name": old.name, "hash": "0" * 64})
    _write(paths[1], "another-track", spec_of(paths[1]), spec_of(paths[1]).overrides or None)
    _write(paths[2], ctx.track.id, spec_of(paths[2]), {"train": {"epochs": 99}})
    paths[3].write_text("{not json")
    assert count_done(paths, ctx) == 4  # the four spoilt above no longer count


def test_checkpoints_are_kept_only_for_methods_with_jobs_left(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    for name, mtime in (("vicreg-aaaa", 1_000), ("vicreg-bbbb", 2_000), ("simclr-cccc", 1_000)):
        folder = runs / "pretrain" / "trk" / name
        folder.mkdir(parents=True)
        for file in ("encoder.safetensors", "config.json"):
            (folder / file).write_text(name)
            os.utime(folder / file, (mtime, mtime))
    session = Session(out=out, preset="tiny", track="trk")
    session.units = [Unit("vicreg", "ssl", [Path("a"), Path("b")], done=1),
                     Unit("simclr", "ssl", [Path("c")], done=1),
                     Unit("random", "baseline", [Path("d")], done=0)]
    assert _keep_checkpoints(session, runs) == [str(Path("runs/pretrain/trk/vicreg-bbbb"))]
    kept = out / "runs" / "pretrain" / "trk" / "vicreg-bbbb"
    assert (kept / "encoder.safetensors").read_text() == "vicreg-bbbb" and (kept / "config.json").exists()
    assert not (out / "runs" / "pretrain" / "trk" / "simclr-cccc").exists()


def test_a_step_past_its_limit_is_interrupted_and_its_output_kept(tmp_path):
    log = tmp_path / "step.log"
    script = "import time\nprint('started', flush=True)\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n" \
             "    print('interrupted: finished work kept', flush=True)\n    raise SystemExit(130)\n"
    code, seconds = run_step([sys.executable, "-c", script], log, limit_s=2.0)
    assert code is None and seconds < 30
    text = log.read_text()
    assert "started" in text and "interrupted: finished work kept" in text
    assert run_step([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "other.log", limit_s=30)[0] == 3


def test_missing_modules_found_by_the_device_check_keep_the_grid_from_starting(tmp_path):
    from benchmark.session import _missing_dependencies

    session = Session(out=tmp_path, preset="tiny", track="trk")
    report = tmp_path / "doctor" / "doctor.json"
    report.parent.mkdir()
    report.write_text(json.dumps({"rows": [{"id": "dependencies", "status": "failed",
                                            "detail": "RuntimeError: not importable: jsonschema"}]}))
    assert _missing_dependencies(session) is None  # no device check in this session: an old report
    session.doctor = {"status": "failed rows"}
    assert "jsonschema" in _missing_dependencies(session)
    report.write_text(json.dumps({"rows": [{"id": "dependencies", "status": "ok", "detail": ""},
                                           {"id": "ddp", "status": "failed", "detail": "hang"}]}))
    assert _missing_dependencies(session) is None  # other failures do not stop the grid


def test_outside_a_git_checkout_a_session_starts_no_grid_step_and_says_why(monkeypatch, tmp_path):
    """Its results would all be refused (no commit to record): the grid is not run, the summary says why."""
    from benchmark import provenance
    from benchmark.session import SessionSettings, run_session

    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    provenance.git_state.cache_clear()
    try:
        code = run_session(SessionSettings(out=tmp_path / "out", preset=str(TINY), methods="random", doctor=False,
                                           runs_dir=tmp_path / "runs", cache_dir=str(tmp_path / "cache"),
                                           from_results=tmp_path / "none"))
    finally:
        provenance.git_state.cache_clear()
    assert code == 1
    summary = json.loads((tmp_path / "out" / "session.json").read_text())
    assert "not a git checkout" in summary["not_run"] and summary["jobs_done"] == 0 and summary["steps"] == []
    assert [u["note"] for u in summary["units"]] == ["not a git checkout"]
    assert "No grid step ran: " in (tmp_path / "out" / "SESSION.md").read_text()


def test_the_error_line_of_a_step_is_the_childs_not_the_launchers():
    torchrun = ("Traceback (most recent call last):\n  File x\nValueError: bad shape (3, 4)\n"
                "[rank0]: more\ntorch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n"
                "benchmark FAILED\n")
    assert last_error_line(torchrun) == "ValueError: bad shape (3, 4)"
    assert last_error_line("warning: UserWarning x\nsslbench: error: unknown backbone 'r99'\n") == \
        "sslbench: error: unknown backbone 'r99'"
    assert last_error_line("all fine\nlast words\n") == "last words" and last_error_line("") == "no output"


def test_a_session_started_from_imagenet_plans_and_runs_the_continued_rows(tmp_path, monkeypatch):
    """`--start imagenet`: an SSL unit is the continued row (its own results and checkpoints), its step runs
    `sslbench bench --method M --start imagenet`; the baselines are what they always are."""
    import benchmark.session as session_module
    from benchmark.session import SessionSettings, _run_unit
    from benchmark.track import method_init_name

    ctx = track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                        cache_dir=str(tmp_path / "cache"), start="imagenet")
    unit = Unit(method_init_name(ctx, "vicreg"), "ssl", planned_results(ctx, method_init_name(ctx, "vicreg")),
                method="vicreg")
    assert unit.init == "vicreg@imagenet" and unit.method == "vicreg"
    assert all(p.is_relative_to(ctx.results_dir / ctx.track.id / "vicreg@imagenet") for p in unit.planned)
    assert Unit("random", "baseline", []).method == "random"
    seen = []
    def run_step(command, log, limit):
        seen.append(command)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("ran\n")
        return 0, 1.0

    monkeypatch.setattr(session_module, "run_step", run_step)
    settings = SessionSettings(out=tmp_path / "out", preset=str(TINY), start="imagenet")
    _run_unit(Session(out=tmp_path / "out", preset=str(TINY), track=ctx.track.id), unit, ctx, settings)
    command = seen[0]
    assert command[command.index("--method") + 1] == "vicreg"
    assert command[command.index("--start") + 1] == "imagenet" and "--no-baselines" in command
