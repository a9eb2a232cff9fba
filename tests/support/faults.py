"""Real parts that fail on cue: a git server that holds a fetch open, a second
dockerd that can be stopped, a tiny full disk, and a build run in the
background so a fault can land while it is in flight.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.procs import descendants
from tests.support.realparts import GitServer, SSHKey

#: Run by sshd instead of the client's command (authorized_keys ``command=``):
#: says that a fetch arrived, then holds it until released or 300 s pass.
HOLD = """\
#!/bin/sh
touch "$(dirname "$0")/fetch-started"
waited=0
while [ ! -e "$(dirname "$0")/release" ] && [ "$waited" -lt 1500 ]; do
    sleep 0.2; waited=$((waited + 1))
done
exec sh -c "$SSH_ORIGINAL_COMMAND"
"""


class HoldingGitServer(GitServer):
    """A `GitServer` whose fetches wait, after the key authenticated, until released.

    A test sees the fetch start (`started`), injects its fault while the
    build's private step is mid-fetch, and may `release` it.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.hold = root / "hold" / "hold.sh"

    def start(self) -> HoldingGitServer:
        """Write the hold script, then start sshd."""
        self.hold.parent.mkdir(parents=True, exist_ok=True)
        self.hold.write_text(HOLD)
        self.hold.chmod(0o755)
        super().start()
        return self

    def authorize(self, key: SSHKey) -> None:
        """Let ``key`` log in; every command it runs goes through the hold script."""
        with self.authorized_keys.open("a") as f:
            f.write(f'command="{self.hold}" {key.public_line}\n')

    @property
    def started(self) -> bool:
        """Whether a fetch has authenticated and is being held."""
        return (self.hold.parent / "fetch-started").exists()

    def release(self) -> None:
        """Let held and future fetches go on."""
        (self.hold.parent / "release").touch()

    def kill(self) -> None:
        """SIGKILL sshd and every session it forked (they run in sessions of their own)."""
        if self._process is not None:
            kill_tree(self._process.pid)
            self._process.wait(timeout=10)
        self._process = None


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (found by parent pid, not by name)."""
    for victim in descendants([pid]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


class BackgroundRun:
    """``python -m invoke ARGS`` in a project, running while the test acts on it.

    Output goes to files (a pipe nobody reads would stall a chatty build).
    """

    def __init__(self, cwd: Path, args: list[str], env: Mapping[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self._out = (logs / "stdout").open("w+")
        self._err = (logs / "stderr").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
        )

    def running(self) -> bool:
        """Whether the run has not ended yet."""
        return self.process.poll() is None

    def finish(self, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Wait for the end; the result looks like `subprocess.run`'s."""
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._out.seek(0)
        self._err.seek(0)
        done = subprocess.CompletedProcess(
            self.process.args, self.process.returncode, self._out.read(), self._err.read()
        )
        self._out.close()
        self._err.close()
        return done


class SecondDockerd:
    """A second, real dockerd on a socket of its own (own data root and exec root).

    It stands in for a remote builder, or for an engine a test may stop. The
    main engine is never touched.
    """

    def __init__(self, docker: str, root: Path) -> None:
        self.docker = docker
        self.root = root
        self.host = f"unix://{root}/docker.sock"
        self.data_root = root / "data"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """This process's environment pointing the docker CLI at this daemon."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def start(self, images: list[str]) -> SecondDockerd:
        """Start dockerd, wait for it to answer, copy ``images`` from the main engine."""
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        self.root.mkdir(exist_ok=True)
        with (self.root / "dockerd.log").open("wb") as log:
            self._process = subprocess.Popen(
                [
                    dockerd,
                    "--host",
                    self.host,
                    "--data-root",
                    str(self.data_root),
                    "--exec-root",
                    str(self.root / "exec"),
                    "--pidfile",
                    str(self.root / "docker.pid"),
                    "--bridge=none",
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not self.answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log_text = (self.root / "dockerd.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"the second dockerd did not start: {log_text}")
            time.sleep(0.5)
        for image in images:
            saved = subprocess.Popen([self.docker, "save", image], stdout=subprocess.PIPE)
            subprocess.run(
                [self.docker, "load"],
                stdin=saved.stdout,
                env=self.env,
                capture_output=True,
                check=True,
            )
            saved.wait()
        return self

    def answers(self) -> bool:
        """Whether the daemon answers `docker info`."""
        done = subprocess.run([self.docker, "info"], env=self.env, capture_output=True, check=False)
        return done.returncode == 0

    def stop(self) -> None:
        """Stop the daemon the way a service manager does (SIGTERM, then wait)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                kill_tree(self._process.pid)
                self._process.wait()
        self._process = None

    def remove(self) -> None:
        """Stop, unmount what the daemon mounted, delete its directories."""
        self.stop()
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def second_dockerd(docker: str, images: list[str]) -> Iterator[SecondDockerd]:
    """A started `SecondDockerd` under /tmp (socket paths are short), removed afterwards."""
    daemon = SecondDockerd(docker, Path("/tmp") / f"sbt-dockerd-{os.getpid()}-{time.time_ns()}")
    try:
        yield daemon.start(images)
    finally:
        daemon.remove()


@contextlib.contextmanager
def tiny_full_tmpfs(mountpoint: Path, size: str = "1m", free: int = 0) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mountpoint``, filled up but for ``free`` bytes; unmounted after."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(mountpoint)],
        check=True,
        capture_output=True,
    )
    try:
        with (mountpoint / "filler").open("wb", buffering=0) as filler:
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 4096)
            filler.truncate(max(0, filler.tell() - free))
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False, capture_output=True)
