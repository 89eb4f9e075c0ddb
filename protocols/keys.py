"""Job keys: the sha256 of everything that determines a result, and the same key recomputed from a
result file's own record.

A main-grid job is keyed by its protocol (the file's hash and the preset's overrides of how a job runs),
its init (name + weights), the dataset fingerprints, the track, its fraction and its two seeds. The
lists that only choose which jobs a track runs (`REPLICATE_KEYS`: fractions, seeds, pretraining seeds)
stay out of the key: a job's own fraction and seeds are in it, so a track can add pretraining runs or
seeds without re-keying the jobs it has finished. An ablation run is keyed by the ablation protocol's key,
what the ablation varied (subset, budget or held-out scanner) and the key of the evaluation job it wraps.
A learning-curve run keys its protocol by the file alone (`learning_curve_key`): every setting of that
protocol chooses which runs are made, none how one goes.

Earlier, the overrides entered the key whole (replicate lists included). `rekey_results` carries
result files written then over to today's keys, after checking that each file's
stored key is exactly the one its record implies under the earlier scheme, so a file is never re-keyed
on a guess. Torch-free: `sslbench validate --rekey` uses it.
"""
from __future__ import annotations

from pathlib import Path

from leaderboard.results import (
    CONTINUED_RECIPE,
    LEARNING_CURVE,
    POSITIVES,
    POSITIVES_AXIS,
    RECIPE_AXIS,
    STEPS_AXIS,
    subset_tag,
)
from protocols.spec import canonical_hash, protocol_key


def job_key(protocol_key: dict, init_name: str, init_identity: str, fingerprints: dict, track: dict,
            fraction: float, pretrain_seed: int, seed: int) -> str:
    return canonical_hash({"protocol": protocol_key, "init": {"name": init_name, "identity": init_identity},
                           "data": fingerprints, "track": track, "fraction": float(fraction),
                           "pretrain_seed": int(pretrain_seed), "seed": int(seed)})


def ablation_key(protocol_key: dict, varied: dict, eval_job_key: str) -> str:
    """`varied`: {"subset": tag} (variance-vs-size), {"steps": budget} (learning curve), {"recipe": knobs}
    (continued recipe), {"positives": mode} (positives) or {"held_out": scanner} (cross-scanner)."""
    return canonical_hash({"ablation": protocol_key, **varied, "eval_job": eval_job_key})


def learning_curve_key(file_hash: str, steps: int, eval_job_key: str) -> str:
    """The key of a learning-curve run: the protocol file's hash, the budget and the evaluation job.

    The preset's overrides of the protocol stay out: each of its settings only chooses which runs are made
    (methods, budgets, the evaluation protocols, fraction and seeds), while how a run goes is in the
    evaluation job's key (its protocol, fraction, seeds) and its checkpoint's hash (the budget and the
    preset's pretraining settings). So a track that adds a budget or a method keeps its finished runs."""
    return ablation_key(protocol_key(LEARNING_CURVE, file_hash, {}), {"steps": int(steps)}, eval_job_key)


def continued_recipe_key(file_hash: str, recipe: dict, eval_job_key: str) -> str:
    """The key of a continued-recipe run: the protocol file's hash, the recipe's knobs (every knob, so a
    renamed recipe keeps its runs) and the evaluation job. As for the learning curve, the preset's overrides
    only choose which runs are made: how one goes is in its evaluation job's key and its checkpoint's hash."""
    return ablation_key(protocol_key(CONTINUED_RECIPE, file_hash, {}), {"recipe": dict(recipe)}, eval_job_key)


def positives_key(file_hash: str, positives: str, eval_job_key: str) -> str:
    """The key of a positives-ablation run: the protocol file's hash, how its positive pairs were drawn and the
    evaluation job. As for the learning curve, the preset's overrides only choose which runs are made."""
    return ablation_key(protocol_key(POSITIVES, file_hash, {}), {"positives": str(positives)}, eval_job_key)


def init_identity(name: str, checkpoint_hash: str | None, backbone: str) -> str:
    """Identifies the encoder weights: the checkpoint's hash, or the named weights of the backbone."""
    return f"ckpt:{checkpoint_hash}" if checkpoint_hash is not None else f"{name}:{backbone}"


def record_key(record: dict, ablation_overrides: dict | None = None, *, legacy: bool = False) -> str:
    """The key that `record` (a result file's content) implies. `ablation_overrides`: the track preset's
    overrides of the ablation protocol, for variance-vs-size and cross-scanner records (their files do not
    record them; a learning curve's key holds none).
    `legacy`: under the earlier scheme (whole overrides). A KeyError/TypeError on a record that lacks
    a field."""
    job, init, track = record["job"], record["init"], record["track"]
    overrides = record["train"].get("protocol_overrides") or {}
    ab, sc = record.get("ablation"), record.get("scanner")
    if ab:  # an ablation's run: the evaluation protocol it ran
        evaluated = (ab["eval_protocol"], ab["eval_protocol_hash"])
    elif sc:  # a cross-scanner run: likewise
        evaluated = (sc["eval_protocol"], sc["eval_protocol_hash"])
    else:
        evaluated = (record["protocol"]["name"], record["protocol"]["hash"])
    key = job_key(protocol_key(*evaluated, overrides, legacy=legacy), init["name"],
                  init_identity(init["name"], init.get("checkpoint_hash"), track["backbone"]),
                  record["provenance"]["dataset_fingerprints"], track, job["fraction"], job["pretrain_seed"],
                  job["seed"])
    if ab and ab["axis"] == STEPS_AXIS:  # learning curve: the budget
        return learning_curve_key(record["protocol"]["hash"], ab["steps"], key)
    if ab and ab["axis"] == RECIPE_AXIS:  # continued recipe: its knobs
        return continued_recipe_key(record["protocol"]["hash"], ab["recipe"], key)
    if ab and ab["axis"] == POSITIVES_AXIS:  # positives: how the pairs were drawn
        return positives_key(record["protocol"]["hash"], ab["positives"], key)
    if ab:  # variance-vs-size: the subset
        varied = {"subset": subset_tag(ab["axis"], ab["level"])}
    elif sc:  # cross-scanner: the held-out scanner
        varied = {"held_out": sc["held_out"]}
    else:
        return key
    ablation = protocol_key(record["protocol"]["name"], record["protocol"]["hash"], ablation_overrides or {},
                            legacy=legacy)
    return ablation_key(ablation, varied, key)


def rekey_results(files: list[Path], ablation_overrides: dict[tuple[str, str], dict]) -> dict[str, list[Path]]:
    """Give result files written under the earlier key scheme today's keys. `ablation_overrides`:
    (preset, ablation protocol) → the preset's overrides of it. Returns the files by outcome:
    "rekeyed", "current" (already today's key) and "unmatched" (the stored key is neither: left as is,
    so the job reruns)."""
    from leaderboard.results import read_json, write_result

    out: dict[str, list[Path]] = {"rekeyed": [], "current": [], "unmatched": []}
    for path in files:
        record = read_json(path)
        try:
            overrides = ablation_overrides.get((record["track"].get("preset"), record["protocol"]["name"]))
            stored = record["job"]["key"]
            new, old = (record_key(record, overrides, legacy=legacy) for legacy in (False, True))
        except (KeyError, TypeError, AttributeError):
            out["unmatched"].append(path)
            continue
        if stored == new:
            out["current"].append(path)
        elif stored == old:
            write_result(path, {**record, "job": {**record["job"], "key": new}})
            out["rekeyed"].append(path)
        else:
            out["unmatched"].append(path)
    return out
