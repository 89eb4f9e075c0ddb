"""The shell commands written in the documentation, read from its fenced code blocks.

A block whose fence names a shell (```bash, ```sh, ```shell, ```console) or no language at all holds
commands; a block that is not meant to run says so with its language (```text for layouts and output,
```toml, ```python). Any other language is refused, so a new block is either run by
tests/e2e/test_docs_commands.py or explicitly marked as not a command.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "CONTRIBUTING.md", "benchmark/data/sources/FORMATS.md")

COMMAND_FENCES = {"", "bash", "sh", "shell", "console"}
# Not run by the docs test: layouts, output samples and settings (text, toml), and code: CONTRIBUTING's
# ```python worked example is run by tests/conformance/test_methods.py, which reads it from there.
OTHER_FENCES = {"text", "toml", "python"}

_FENCE = re.compile(r"^( *)```(\S*)\s*$")


class UnmarkedBlock(ValueError):
    """A fenced block whose language says neither "commands" nor "not a command"."""


@dataclass(frozen=True)
class DocCommand:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the command's first line
    text: str  # the command, continuation lines joined

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def fenced_blocks(text: str, doc: str = "<text>") -> list[tuple[str, int, list[str]]]:
    """(language, line of the opening fence, body lines) per block; fences may be indented (in lists)."""
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(line)
        if current is None:
            if fence:
                current = (fence.group(2).lower(), number, [])
        elif fence and not fence.group(2):
            blocks.append(current)
            current = None
        else:
            current[2].append(line)
    if current is not None:
        raise ValueError(f"{doc}:{current[1]}: the code block opened here is never closed")
    return blocks


def block_commands(doc: str, language: str, first_line: int, lines: list[str]) -> list[DocCommand]:
    """The commands of one block: blank and `#` lines skipped, `\\` continuations joined; in a ```console
    block only the `$ ` lines are commands (the rest is their output)."""
    commands, parts, start = [], [], 0
    for offset, raw in enumerate(lines, 1):
        line = raw.strip()
        if not parts:
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:].strip()
            if not line or line.startswith("#"):
                continue
            start = first_line + offset
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            commands.append(DocCommand(doc, start, " ".join(parts)))
            parts = []
    if parts:
        raise ValueError(f"{doc}:{start}: the command ends with a `\\` continuation and no next line")
    return commands


def doc_commands(doc: str, text: str | None = None) -> list[DocCommand]:
    """Every command of the fenced command blocks of `doc` (a path relative to the repository)."""
    text = (REPO / doc).read_text() if text is None else text
    commands = []
    for language, line, body in fenced_blocks(text, doc):
        if language in OTHER_FENCES:
            continue
        if language not in COMMAND_FENCES:
            raise UnmarkedBlock(f"{doc}:{line}: a ```{language} block: fence it ```bash if it holds commands "
                                "(tests/e2e/test_docs_commands.py runs them) or ```text if it is not meant to run")
        commands.extend(block_commands(doc, language, line, body))
    return commands


def all_doc_commands() -> list[DocCommand]:
    return [command for doc in DOCS for command in doc_commands(doc)]
