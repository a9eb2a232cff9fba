"""Looking at live processes through /proc: trees, command lines, environments.

Security tests sample what other local users (and `ps`) could see of a
running build: every process's argv and, for root, its environment. Reading
/proc races with processes exiting; a process that is gone is simply skipped.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Snapshot:
    """What /proc showed of one process at one moment."""

    pid: int
    name: str  # the kernel's short name (comm)
    cmdline: bytes  # NUL-separated argv
    environ: bytes  # NUL-separated NAME=VALUE
    cwd: str  # working directory, as the process itself sees it ("" when unreadable)

    @property
    def argv(self) -> list[str]:
        """The command line as a list."""
        return [a.decode(errors="replace") for a in self.cmdline.split(b"\0") if a]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def snapshot(pid: int) -> Snapshot | None:
    """Name, argv and environment of ``pid``; None when it is gone (or a kernel thread)."""
    proc = Path("/proc") / str(pid)
    name, cmdline, environ = _read(proc / "comm"), _read(proc / "cmdline"), _read(proc / "environ")
    if name is None or cmdline is None or environ is None:
        return None
    try:
        cwd = os.readlink(proc / "cwd")
    except OSError:
        cwd = ""
    return Snapshot(pid, name.decode(errors="replace").strip(), cmdline, environ, cwd)


def all_pids() -> list[int]:
    """Every process id /proc lists right now."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def parents() -> dict[int, int]:
    """pid -> parent pid, for every process right now."""
    found: dict[int, int] = {}
    for pid in all_pids():
        stat = _read(Path("/proc") / str(pid) / "stat")
        if stat is None:
            continue
        # The name field may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        with contextlib.suppress(IndexError, ValueError):
            found[pid] = int(fields[1])
    return found


def descendants(roots: Iterable[int], parent_of: dict[int, int] | None = None) -> set[int]:
    """``roots`` and every process below them."""
    parent_of = parents() if parent_of is None else parent_of
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in parent_of]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


def pids_whose_cmdline_has(marker: bytes) -> list[int]:
    """Processes anywhere on the machine whose argv contains ``marker``."""
    return [pid for pid in all_pids() if marker in (_read(Path(f"/proc/{pid}/cmdline")) or b"")]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` (a generous guard, not a limit)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def new_agent_sockets(before: set[Path]) -> list[Path]:
    """Sockets of ephemeral agents in work directories that ``before`` did not list."""
    tmp = Path(tempfile.gettempdir())  # the test's own (see tests/conftest.py)
    new = set(tmp.glob("securebuild-*")) - before
    return [d / "agent.sock" for d in new if (d / "agent.sock").exists()]


def workdirs() -> set[Path]:
    """The tool's work directories in the test's TMPDIR right now."""
    return set(Path(tempfile.gettempdir()).glob("securebuild-*"))


def alive(pid: int) -> bool:
    """Whether ``pid`` exists (and is no zombie)."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    return stat is not None and stat[stat.rfind(b")") + 2 :][:1] != b"Z"
