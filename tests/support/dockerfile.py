"""Reading a Dockerfile the way the frontend does: instructions, not lines.

Comments are dropped and backslash continuations joined, so a check sees each
instruction whole (a ``RUN`` spread over twenty lines is one string), and a
word in a comment is never mistaken for a command. Deliberately small and
independent of the package's own checks (doctor, audit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword, arguments and first line number."""

    keyword: str
    args: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuations joined, comments dropped."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are skipped too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        found.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    if pending:
        keyword, _, args = " ".join(pending).partition(" ")
        found.append(Instruction(keyword.upper(), args.strip(), start))
    return found


def declared_names(instruction: Instruction) -> list[str]:
    """The variable names an ARG or ENV instruction declares (all forms)."""
    if instruction.keyword == "ARG":
        return [part.partition("=")[0] for part in instruction.args.split()]
    if instruction.keyword != "ENV":
        return []
    if "=" not in instruction.args.split(None, 1)[0]:
        return [instruction.args.split(None, 1)[0]]  # legacy form: ENV NAME value
    # NAME=VALUE pairs; values may be quoted and contain spaces.
    return re.findall(
        r'(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(?:"(?:[^"\\]|\\.)*"|\S*)', instruction.args
    )


def run_mounts(instruction: Instruction) -> list[str]:
    """The ``--mount=...`` options of a RUN instruction, as written."""
    return re.findall(r"--mount=(\S+)", instruction.args) if instruction.keyword == "RUN" else []


def index_filter(text: str) -> str:
    """The awk program with which the template's steps keep a file's non-URL lines.

    The runtime step and the wheels step (``inv vendor``) must split a file
    alike, so every copy in the template must be the same program.
    """
    found = {
        program
        for step in instructions(text)
        if step.keyword == "RUN"
        for program in re.findall(r"awk '(.*?)' requirements\.txt > index\.txt", step.args)
    }
    if len(found) != 1:
        raise AssertionError(f"the template's index.txt filters differ or are missing: {found}")
    return found.pop()


#: The awk and grep programs the template's scripts meet in base images:
#: mawk (Debian and the official python images), gawk, and BusyBox (Alpine).
#: Each is the argv prefix that runs it.
AWKS = {"mawk": ("mawk",), "gawk": ("gawk",), "busybox": ("busybox", "awk")}
GREPS = {"gnu": ("grep",), "busybox": ("busybox", "grep")}


def greps(text: str) -> list[tuple[tuple[str, ...], str]]:
    """Every grep of the template whose pattern is a literal: (options, pattern)."""
    return [
        (tuple(flag for flag in flags.split() if flag != "-e"), pattern)
        for flags, pattern in re.findall(r"\bgrep((?: -[A-Za-z]+)*) '([^']*)'", text)
    ]
