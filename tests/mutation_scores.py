"""`make mutation`'s summary: mutmut's verdicts counted per module (mutmut itself prints one line per
mutant, or one total), and the surviving mutants listed for TESTING.md."""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict

VERDICT = re.compile(r"^\s*(?P<module>[\w.]+?)\.x\S*__mutmut_\d+: (?P<status>.+)$")


def main() -> int:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True,
                         text=True, check=True).stdout
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for line in out.splitlines():
        m = VERDICT.match(line)
        if m:
            counts[m["module"]][m["status"]] += 1
            if m["status"] == "survived":
                survivors.append(line.strip().split(":")[0])
    print(f"{'module':34} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} {'timeout':>7} {'score':>6}")
    for module, c in sorted(counts.items()):
        killed = c["killed"] + c["timeout"]
        tested = killed + c["survived"]
        score = f"{100 * killed / tested:.0f} %" if tested else "—"
        print(f"{module:34} {sum(c.values()):7} {c['killed']:6} {c['survived']:8} {c['no tests']:8} "
              f"{c['timeout']:7} {score:>6}")
    other = sorted({s for c in counts.values() for s in c} - {"killed", "survived", "no tests", "timeout"})
    if other:
        print("other verdicts:", ", ".join(f"{s} {sum(c[s] for c in counts.values())}" for s in other))
    print("\nsurvivors (`mutmut show NAME` prints the change):")
    print("\n".join(f"  {s}" for s in survivors) or "  none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
