"""The private work directory and the ephemeral ssh-agent that lives in it.

A key taken from the keyring or a file is handed to OpenSSH's own ``ssh-agent``
(started for one build, on a socket in a fresh 0700 directory) through
``ssh-add``'s standard input: never a file, never argv, never an environment
variable. The agent holds that one key with a lifetime (``ssh-add -t``), and the
process and directory are removed on success, failure, Ctrl-C and SIGTERM. A run
killed with SIGKILL leaves a directory whose owner pid is dead; the next run
reaps it (`reap_stale_workdirs`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .errors import AgentError, SecurebuildError

WORKDIR_PREFIX = "securebuild-"
# The names `tempfile.mkdtemp` gives: the prefix and eight characters of its
# alphabet. Anything else under the prefix is somebody else's.
_WORKDIR_NAME = re.compile(re.escape(WORKDIR_PREFIX) + r"[a-z0-9_]{8}")
_OWNER_FILE = "owner"
# A work dir without an owner file (a run killed between creating the dir and
# writing the file, so still empty) is stale once it is this old.
_ORPHAN_AGE = 3600


def _base_tempdir() -> Path:
    return Path(tempfile.gettempdir())


#: The longest Unix socket path the system takes (sun_path less its NUL byte).
MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103


def socket_in(workdir: Path, name: str) -> Path:
    """The path of socket ``name`` in ``workdir``; `AgentError` if it is too long to bind.

    Said before anything starts: ssh-agent and the filtering proxy would fail
    on it later, with messages that do not say what to change.
    """
    path = workdir / name
    length = len(os.fsencode(path))
    if length > MAX_SOCKET_PATH:
        raise AgentError(
            f"the agent socket {path} would be {length} bytes long, over the"
            f" {MAX_SOCKET_PATH} a Unix socket path may have",
            hint="point TMPDIR at a shorter directory, such as /tmp",
        )
    return path


def _unwritable(where: Path, exc: OSError) -> SecurebuildError:
    """A full or read-only temp directory, said in one line (never a traceback)."""
    return SecurebuildError(
        f"cannot write to the temp directory {where}: {exc.strerror or exc.__class__.__name__}",
        hint="free some space there, or point TMPDIR at another directory",
    )


@contextlib.contextmanager
def private_workdir() -> Iterator[Path]:
    """Yield a fresh 0700 directory owned by this process; remove it afterwards."""
    base = _base_tempdir()
    try:
        path = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=base))
    except OSError as exc:
        raise _unwritable(base, exc) from None
    try:
        os.chmod(path, 0o700)
        try:
            (path / _OWNER_FILE).write_text(f"{os.getpid()}\n", encoding="ascii")
        except OSError as exc:
            raise _unwritable(base, exc) from None
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_private(workdir: Path, name: str, text: str) -> Path:
    """Write ``text`` to a new 0600 file ``name`` in the work directory.

    A temp directory that is full or read-only ends the run with one line; the
    half-written file goes with the work directory.
    """
    path = workdir / name
    try:
        path.touch(mode=0o600)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _unwritable(workdir.parent, exc) from None
    return path


def reap_stale_workdirs(*, dry_run: bool = False, only: Path | None = None) -> list[Path]:
    """Remove work directories (and their agents) left by runs that were killed.

    With ``dry_run`` only list them; with ``only`` consider just that directory.
    """
    reaped: list[Path] = []
    candidates = [only] if only is not None else _base_tempdir().glob(WORKDIR_PREFIX + "*")
    for path in candidates:
        try:
            if not _WORKDIR_NAME.fullmatch(path.name) or path.is_symlink() or not path.is_dir():
                continue
            if not _mine(path):
                continue
            owner_file = path / _OWNER_FILE
            if owner_file.exists():
                owner = int(owner_file.read_text(encoding="ascii").split()[0])
                if _alive(owner):
                    continue
            elif any(path.iterdir()) or time.time() - path.stat().st_mtime < _ORPHAN_AGE:
                # Files but no owner: not made by `private_workdir`, which
                # writes the owner before anything else. Or being created now.
                continue
        except (OSError, ValueError, IndexError, AttributeError):
            continue
        reaped.append(path)
        if not dry_run:
            # No process is signalled: pids are reused, and an agent whose
            # owner died has already exited on its own (see EphemeralAgent).
            shutil.rmtree(path, ignore_errors=True)
    return reaped


def _mine(path: Path) -> bool:
    """Whether this user owns ``path``. Windows has no uids: there the temp folder
    is in the user's own profile (%TEMP%), and whatever is in it is theirs."""
    getuid = getattr(os, "getuid", None)
    return getuid is None or path.stat().st_uid == getuid()


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        # os.kill(pid, 0) would send that process CTRL_C_EVENT on Windows.
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
        try:
            code = wintypes.DWORD()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _child_env(socket: Path | None = None) -> dict[str, str]:
    """A minimal environment for ssh-agent and ssh-add: no askpass, no user agent."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    if socket is not None:
        env["SSH_AUTH_SOCK"] = str(socket)
    return env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AgentError(
            f"{name} is not installed",
            hint="install the OpenSSH client (it provides ssh-agent and ssh-add)",
        )
    return path


class EphemeralAgent:
    """An ``ssh-agent`` for one build, holding one key, on a socket in ``workdir``.

    The agent runs in OpenSSH's command mode with a ``cat`` reading a pipe from
    this process as its command: ssh-agent exits on its own (within its 10 s
    parent check) once that command ends, and the command ends when the pipe
    closes, which the kernel does when this process dies by any means, SIGKILL
    and hangups included. Normal cleanup does not wait for that: the agent's
    pid, which it reports itself (``SSH_AGENT_PID``), gets SIGTERM at once.
    """

    def __init__(self, workdir: Path, *, lifetime: int) -> None:
        self.workdir = workdir
        self.socket = socket_in(workdir, "agent.sock")
        self.lifetime = lifetime
        self._process: subprocess.Popen[bytes] | None = None
        self._agent_pid: int | None = None

    def __enter__(self) -> EphemeralAgent:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the agent and wait until its socket accepts keys."""
        try:
            self._start()
        except BaseException:
            # Ctrl-C or a failure half-way: no agent may outlive this call.
            self.stop()
            raise

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [
                _tool("ssh-agent"),
                "-a",
                str(self.socket),
                "sh",
                "-c",
                'echo "$SSH_AGENT_PID"; exec cat >/dev/null',
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(),
            # Own process group: a Ctrl-C aimed at the build must not kill the
            # agent before this process has cleaned up in order.
            start_new_session=True,
        )
        assert self._process.stdout is not None  # noqa: S101 - set by stdout=PIPE above
        line = self._process.stdout.readline().decode("ascii", errors="replace").strip()
        if not line.isdigit():
            err = (
                self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
            )
            raise AgentError(
                f"the ephemeral ssh-agent did not start ({err.strip() or 'no message'})",
                hint="check that OpenSSH's ssh-agent works here",
            )
        self._agent_pid = int(line)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise AgentError("the ephemeral ssh-agent did not open its socket in 10 s")
            time.sleep(0.02)
        os.chmod(self.socket, 0o600)

    def add(self, key: bytes) -> None:
        """Load ``key`` (an unencrypted OpenSSH private key) through ssh-add's stdin."""
        result = subprocess.run(
            [_tool("ssh-add"), "-q", "-t", str(self.lifetime), "-"],
            input=key,
            capture_output=True,
            env=_child_env(self.socket),
            check=False,
        )
        if result.returncode != 0:
            # ssh-add's messages name the problem, never the key's content.
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise AgentError(
                "the ephemeral ssh-agent refused the key"
                + (f" ({message[-1]})" if message else ""),
                hint="check that the key is a valid OpenSSH private key",
            )

    def add_certificate(self, key: bytes, certificate: bytes) -> None:
        """Add ``key`` (as `add` takes it) again with its OpenSSH ``certificate``,
        with the same lifetime: ssh-add reads a certificate only from a file."""
        from cryptography.hazmat.primitives import serialization

        from .agent_protocol import AgentProtocolError, add_certificate

        private = serialization.load_ssh_private_key(key, password=None)
        try:
            add_certificate(str(self.socket), certificate, private, self.lifetime)
        except AgentProtocolError as exc:
            raise AgentError(
                f"the ephemeral ssh-agent refused the key's certificate ({exc})",
                hint="check that the certificate is one OpenSSH can use",
            ) from None

    def stop(self) -> None:
        """Stop the agent at once and end its command (idempotent)."""
        pid, self._agent_pid = self._agent_pid, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if pid is not None:
            _wait_gone(pid)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    """Wait until ``pid`` has exited (it is no child of ours: poll)."""
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
