"""The project's errors: one base class, a few kinds, each with a next step.

A message says what happened and what to do. No message ever carries key
material: errors are built from paths, names and fingerprints only.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

#: The command users run tasks with, as hints name it: ``inv``, or
#: ``securebuild`` when the standalone command runs (see `use_command`); and
#: the prefix of this tool's tasks where a tasks.py holds them in a collection
#: of their own (``inv securebuild.clean``, see `use_task_prefix`).
_COMMAND = {"name": "inv", "prefix": ""}
#: A task named in a hint: `inv TASK ...`.
_HINTED_TASK = re.compile(r"`inv (?=[a-z])")


def use_command(name: str) -> None:
    """Name ``name`` in hints (written as `` `inv TASK` ``) instead of ``inv``."""
    _COMMAND["name"] = name


def use_task_prefix(prefix: str) -> None:
    """Name this tool's tasks with ``prefix`` (``securebuild.``) in hints."""
    _COMMAND["prefix"] = prefix


def as_run(text: str) -> str:
    """``text`` with each `` `inv TASK`` named as the user runs it here."""
    if _COMMAND == {"name": "inv", "prefix": ""}:
        return text
    return _HINTED_TASK.sub(f"`{_COMMAND['name']} {_COMMAND['prefix']}", text)


class SecurebuildError(Exception):
    """Base class of every error this tool reports as one clear line."""

    #: Exit code the CLI uses for this kind of error.
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """Return the one-line message shown to users."""
        return as_run(f"{self.message}: {self.hint}" if self.hint else self.message)


class SettingsError(SecurebuildError):
    """A setting has a value this tool cannot use."""

    exit_code = 2


class RequirementsError(SecurebuildError):
    """The requirements file is missing or has a line that cannot be parsed."""

    exit_code = 2


class KeySourceError(SecurebuildError):
    """No usable private key could be had from the chosen key source."""

    exit_code = 3


class AgentError(KeySourceError):
    """An ssh-agent (the user's or the ephemeral one) failed or holds no usable key."""


class HostKeyError(SecurebuildError):
    """A git host's key is not pinned, or does not match the pinned key."""

    exit_code = 4


class EngineError(SecurebuildError):
    """Docker is missing, unreachable, or cannot run BuildKit builds."""

    exit_code = 5


class CommandError(SecurebuildError):
    """A child command failed; keeps the command, exit code and output tail."""

    exit_code = 6

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str],
        returncode: int,
        output: str = "",
        hint: str = "",
    ) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.output = output
        super().__init__(message, hint=hint)


class BuildError(CommandError):
    """`docker build` ran and failed."""


def silence_stdout() -> None:
    """After a `BrokenPipeError` on stdout (``securebuild --help | head``):
    point stdout at the null device, so the interpreter's final flush into the
    closed pipe raises nothing."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def read_bytes(
    path: Path, what: str, error: type[SecurebuildError] = SettingsError, hint: str = ""
) -> bytes:
    """``path``'s bytes, or ``error`` in one line naming ``what`` the file is, its
    path and the reason (never any of its content): one message for every file a
    setting names."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(
            f"cannot read {what} {path} ({exc.strerror or exc.__class__.__name__})",
            hint=hint or "check the file and its permissions",
        ) from None
