"""`make golden`: rewrite tests/fixtures/leaderboard/expected.md from the fixture results, the only
way that file changes (the golden test compares, it never writes). Review the diff before committing."""
from __future__ import annotations

import tempfile
from pathlib import Path

from tests.unit.test_leaderboard import GOLDEN, generate, make_fixture


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results, protocols = make_fixture(Path(tmp) / "fixture")
        text = generate(results, protocols, Path(tmp) / "LEADERBOARD.md")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(text)
    print(f"wrote {GOLDEN}; review it with `git diff {GOLDEN}`")


if __name__ == "__main__":
    main()
