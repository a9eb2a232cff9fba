"""Running the tool the way a user does: a fresh interpreter, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment without settings or an agent of the test runner's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECUREBUILD_", "SSH_"))}
    env.update(extra)
    return env


def stand_in_docker(directory: Path, script: str) -> Path:
    """An executable ``directory/bin/docker`` running ``script``: a docker client
    that answers only what the test needs."""
    docker = directory / "bin" / "docker"
    docker.parent.mkdir(parents=True, exist_ok=True)
    docker.write_text(script)
    docker.chmod(0o755)
    return docker


def run_cli(
    module: str,
    cwd: Path,
    *args: str,
    env: Mapping[str, str],
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` in ``cwd``; output captured, exit code not checked."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_in_pty(
    module: str,
    cwd: Path,
    *args: str,
    env: Mapping[str, str],
    timeout: float = 600,
    columns: int = 120,
    typed: bytes = b"",
) -> tuple[int, bytes]:
    """``python -m MODULE ARGS`` with a real pseudo-terminal as stdin, stdout and stderr.

    Programs then behave as in a user's terminal (docker renders BuildKit's tty
    progress). ``typed`` is typed at the terminal once the program has written
    something (a prompt). Returns the exit code and everything written to the terminal.
    """
    import fcntl  # POSIX only, like pseudo-terminals
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=dict(env),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
            if typed:
                os.write(master, typed)
                typed = b""
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, b"".join(chunks)


def stop_and_collect(process: subprocess.Popen[bytes], *, interrupt: bool = True) -> str:
    """End a build started in its own session the way a terminal's Ctrl-C does
    (unless it already ended), wait for it, and return everything it printed.

    The process must have been started with ``start_new_session=True`` and its
    stderr merged into a piped stdout.
    """
    import signal

    if interrupt and process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.stdout.read().decode(errors="replace") if process.stdout else ""
