"""The standalone ``securebuild`` command: the same tasks, no tasks.py needed.

``securebuild --help``, ``--list`` and ``--version`` are answered here, from
the table below, without importing invoke: that import alone takes about ten
times a bare Python start (invoke's ``__init__`` reads its version through
``importlib.metadata`` and imports ``unittest.mock`` for ``MockContext``).
Everything else, every task run included, goes to the invoke `Program` in
`securebuild_tasks.program`.

This module imports nothing heavier than the standard library's ``textwrap``.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Sequence

from .errors import silence_stdout

#: Each task's help line, the first line of its docstring, as ``--list`` shows
#: it. tests/cli/test_program.py holds this table equal to the tasks.
TASK_SUMMARIES: dict[str, str] = {
    "audit": (
        "Search an image's layers, config and history for private keys; exit 7 on a finding."
    ),
    "build-image": "Build the image, forwarding the SSH key to BuildKit (never into a layer).",
    "clean": "Remove the wheelhouse, this project's dangling images, all private build cache.",
    "doctor": (
        "Check docker, BuildKit, the key source, host keys and the Dockerfile; exit 1 on a problem."
    ),
    "forget-key": "Remove the stored SSH key and its passphrase from the OS keyring.",
    "forget-token": "Remove the private index's token from the OS keyring.",
    "init": ("Write a Dockerfile, tasks.py, .env.example and .dockerignore entries (keeps yours)."),
    "lock": "Resolve requirements inside the target image into a hash-pinned lock file.",
    "show-settings": "Print every securebuild setting as resolved here (never a secret).",
    "store-key": "Store an SSH private key, or only its passphrase, in the OS keyring.",
    "store-token": "Store the private index's token (index_url) in the OS keyring.",
    "vendor": "Build wheels for every locked requirement into a hash-checked wheelhouse.",
}

#: The core options that mean something for these tasks, as invoke words them.
#: invoke's options for shell commands run through it (``--echo``, ``--dry``,
#: ``--pty``, ``--hide``, ``--warn-only``, ...) are still accepted, but these
#: tasks run no command through invoke, so the help leaves them out.
CORE_OPTIONS: tuple[tuple[str, str], ...] = (
    (
        "--print-completion-script=STRING",
        "Print the tab-completion script for your preferred shell (bash|zsh|fish).",
    ),
    ("-d, --debug", "Enable debug output."),
    ("-f STRING, --config=STRING", "Runtime configuration file to use."),
    (
        "-F STRING, --list-format=STRING",
        "Change the display format used when listing tasks."
        " Should be one of: flat (default), nested, json.",
    ),
    ("-h [STRING], --help[=STRING]", "Show core or per-task help and exit."),
    ("-l [STRING], --list[=STRING]", "List available tasks, optionally limited to a namespace."),
    ("-V, --version", "Show version and exit."),
)

_INDENT = "  "
_PADDING = 3


def _columns(rows: Sequence[tuple[str, str]]) -> str:
    """Name and help columns, laid out as invoke's ``Program.print_columns`` does.

    Written here because invoke's is a method of `Program`, whose import is
    what these answers avoid; the width is the terminal's, as invoke reads it.
    """
    try:
        width = os.get_terminal_size(sys.stdout.fileno()).columns or 80
    except (OSError, ValueError):
        width = 80
    name_width = max(len(name) for name, _ in rows)
    wrapper = textwrap.TextWrapper(width=width - name_width - len(_INDENT) - _PADDING - 1)
    lines = []
    for name, help_text in rows:
        spec = _INDENT + name.ljust(name_width) + " " * _PADDING
        chunks = wrapper.wrap(help_text) or [""]
        lines.append((spec + chunks[0]).rstrip())
        lines.extend(" " * len(spec) + chunk for chunk in chunks[1:])
    return "\n".join(lines) + "\n\n"


def _task_list() -> str:
    return "Subcommands:\n\n" + _columns(sorted(TASK_SUMMARIES.items()))


def _print_help() -> None:
    sys.stdout.write(
        "Usage: securebuild [--core-opts] <subcommand> [--subcommand-opts] ...\n\n"
        "Core options:\n\n"
        + _columns(CORE_OPTIONS)
        + _task_list()
        + "'securebuild --help <subcommand>' shows a subcommand's options.\n"
    )


def _print_list() -> None:
    sys.stdout.write(_task_list())


def _print_version() -> None:
    from . import __version__

    sys.stdout.write(f"securebuild {__version__}\n")


#: Command lines answered without invoke; any other goes to the Program.
_ANSWERS: dict[tuple[str, ...], Callable[[], None]] = {
    (): _print_help,
    ("-h",): _print_help,
    ("--help",): _print_help,
    ("-l",): _print_list,
    ("--list",): _print_list,
    ("-V",): _print_version,
    ("--version",): _print_version,
}


def _config_files() -> bool:
    """Whether a config file invoke would load is there (system, user or project).

    invoke reads them before it answers even ``--help``, and stops on a broken
    one; the quick answers would not, so with any of them the Program answers.
    """
    bases = ("/etc/securebuild", os.path.expanduser("~/.securebuild"), "securebuild")
    return any(
        os.path.exists(f"{base}.{ext}") for base in bases for ext in ("yaml", "yml", "json", "py")
    )


def main() -> None:
    """Entry point of the ``securebuild`` console script."""
    answer = _ANSWERS.get(tuple(sys.argv[1:]))
    if answer is None or _config_files():
        from .program import run

        run()
        return
    try:
        answer()
        sys.stdout.flush()
    except BrokenPipeError:
        # `securebuild --help | head`: the reader left; stop quietly.
        silence_stdout()
        sys.exit(1)
