"""Committed results are the reference: a run elsewhere never silently replaces them.

A result file that git tracks in the results folder is a reference record. A job whose slot holds a
reference record with another job key does not write over it. That happens when the job was made
again on a machine whose floating point differs (another CPU's instruction set, BLAS or thread count
gives a pretraining run other weights, hence other checkpoint hashes and job keys), or from other
inputs. Its result goes to the same place under the user's own results folder (`<runs>/results`), and
the command ends with a reproduction report: what differs (checkpoint, protocol, data), the
checkpoints' learning diagnostics and the scores side by side, and both machines. `--replace-reference`
writes over the committed file instead, for a user who wants their numbers on the page (git shows the
change). A slot that holds the job's own key is finished wherever it was made, so a bit-identical
rerun on the same kind of machine finds every committed job done, as before.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from leaderboard.results import machine_text, read_result, result_key


def committed_files(results_dir: Path) -> frozenset[Path]:
    """The files below `results_dir` that git tracks (resolved paths); none outside a git checkout."""
    folder = Path(results_dir)
    if not folder.is_dir():
        return frozenset()
    try:
        out = subprocess.run(["git", "-C", str(folder), "ls-files", "-z", "--", "."], capture_output=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    root = folder.resolve()
    return frozenset(root / name for name in out.decode().split("\0") if name)


@dataclass
class ResultSlots:
    """Where each job of a run reads and writes its result: its slot in the results folder, or, when that
    slot holds a committed record with another key, the same relative place under `local_dir`."""

    results_dir: Path
    local_dir: Path
    replace: bool = False
    committed: frozenset[Path] | None = None  # default: what git tracks in results_dir
    diverted: dict[Path, Path] = field(default_factory=dict)  # committed file → where this run's result is
    matched: set[Path] = field(default_factory=set)  # committed files whose key this run's job has

    def __post_init__(self) -> None:
        self.results_dir, self.local_dir = Path(self.results_dir), Path(self.local_dir)
        if self.committed is None:
            self.committed = committed_files(self.results_dir)

    def place(self, output: Path, key: str) -> Path:
        """The file job `key`, whose slot is `output`, is looked up in and written to."""
        resolved = Path(output).resolve()
        if resolved not in self.committed:
            return Path(output)
        if result_key(output) == key:
            self.matched.add(resolved)
            return Path(output)
        if self.replace:
            return Path(output)
        local = self.local_dir / resolved.relative_to(self.results_dir.resolve())
        self.diverted[resolved] = local
        return local


# ------------------------------------------------------------------------------------------- report

def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _machines(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(machine_text(r.get("provenance", {})) for r in records))


def _differences(ref: dict, mine: dict) -> list[str]:
    """What two records of one slot differ in, among the inputs of a job key."""
    out = []
    if ref["init"].get("checkpoint_hash") != mine["init"].get("checkpoint_hash"):
        out.append("checkpoint")
    if ref["protocol"]["hash"] != mine["protocol"]["hash"] or \
            (ref.get("train") or {}).get("protocol_overrides") != (mine.get("train") or {}).get("protocol_overrides"):
        out.append("protocol")
    if ref["provenance"]["dataset_fingerprints"] != mine["provenance"]["dataset_fingerprints"]:
        out.append("data")
    if ref["track"] != mine["track"]:
        out.append("track settings")
    return out or ["job key only"]


def _diagnostics(record: dict) -> str:
    diag = ((record.get("init") or {}).get("pretrain") or {}).get("diagnostics") or {}
    after = diag.get("after") or {}
    if not after:
        return "no diagnostics"
    text = f"pool k-NN {_pct(after.get('knn_macro_f1'))}, effective rank {after.get('effective_rank', 0):.0f}"
    if diag.get("encoder_change"):
        text += f", encoder change {diag['encoder_change']:.3f}"
    return text


def reproduction_report(slots: ResultSlots, machine: dict) -> str:
    """Markdown: how this run's results differ from the committed ones they were not written over.
    Empty when nothing was diverted."""
    from tabulate import tabulate

    from leaderboard.results import fraction_title

    pairs = [(read_result(ref), read_result(local)) for ref, local in sorted(slots.diverted.items())]
    pairs = [(ref, mine) for ref, mine in pairs if ref and mine]
    if not pairs:
        return ""
    tracks = sorted({ref["track"]["id"] for ref, _ in pairs})
    refs = [ref for ref, _ in pairs]
    local_root = slots.local_dir
    lines = [f"# Reproduction report: {', '.join(tracks)}", "",
             f"{len(pairs)} results of this run differ from the committed ones in their slots. The committed "
             f"files are unchanged; this run's are under `{local_root}` (same layout).", "",
             f"- committed results made on: {'; '.join(_machines(refs))}",
             f"- this machine: {machine_text({'machine': machine})}", ""]
    kept: dict[str, int] = {}
    for path in slots.matched:
        record = read_result(path)
        if record:
            kept[record["job"]["init"]] = kept.get(record["job"]["init"], 0) + 1
    if kept:
        lines += ["Committed results whose job keys this run has (same checkpoint, protocol and data), kept as they "
                  "are and not rerun: " + ", ".join(f"{init} {n}" for init, n in sorted(kept.items())) + ".", ""]

    runs: dict[tuple, tuple[dict, dict]] = {}
    for ref, mine in pairs:
        runs.setdefault((ref["track"]["id"], ref["job"]["init"], ref["job"]["pretrain_seed"]), (ref, mine))
    rows = []
    for (_track, init, seed), (ref, mine) in sorted(runs.items()):
        same = ref["init"].get("checkpoint_hash") == mine["init"].get("checkpoint_hash")
        rows.append([init, seed, ", ".join(_differences(ref, mine)),
                     "same" if same else f"{str(ref['init'].get('checkpoint_hash'))[:8]} → "
                                         f"{str(mine['init'].get('checkpoint_hash'))[:8]}",
                     _diagnostics(ref), _diagnostics(mine)])
    lines += ["## Inits", "", tabulate(rows, headers=["init", "pretraining seed", "differs in", "checkpoint",
                                                       "committed", "this run"], tablefmt="github", disable_numparse=True), ""]

    cells: dict[tuple, list[tuple[float, float]]] = {}
    for ref, mine in pairs:
        job = ref["job"]
        cells.setdefault((job["init"], job["protocol"], job["fraction"]), []).append(
            (ref["metrics"]["test"]["macro_f1"], mine["metrics"]["test"]["macro_f1"]))
    rows = []
    for (init, protocol, fraction), scores in sorted(cells.items()):
        a, b = _mean([s[0] for s in scores]), _mean([s[1] for s in scores])
        rows.append([init, protocol, fraction_title(fraction), len(scores), _pct(a), _pct(b),
                     f"{round(100 * (b - a), 1) + 0.0:+.1f}", sum(x == y for x, y in scores)])  # no "-0.0"
    lines += ["## Test macro-F1 (%), mean over the jobs of each cell", "",
              tabulate(rows, headers=["init", "protocol", "fraction", "jobs", "committed", "this run", "Δ",
                                      "identical jobs"], tablefmt="github", disable_numparse=True), ""]
    lines += ["A CPU run reproduces the committed results to the bit only on the same kind of machine (CPU model, "
              "instruction set, BLAS, threads): elsewhere rounding differs in the last bits, and a few hundred "
              "pretraining steps carry that into other weights. Differences of the size of the spread between "
              "pretraining runs on the leaderboard are expected; much larger ones are worth a look.", "",
              "To put this run's numbers on the page instead, run the same command with `--replace-reference` "
              "(it writes over the committed files; `git diff` shows what changed), or give `--results-dir` a "
              "folder of your own for a results folder and page of your own.", ""]
    return "\n".join(lines)
