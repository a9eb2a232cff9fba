"""The ephemeral ssh-agent and its private work directory, with the real ssh-agent."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from securebuild_tasks.agent import (
    WORKDIR_PREFIX,
    EphemeralAgent,
    private_workdir,
    reap_stale_workdirs,
)
from securebuild_tasks.errors import AgentError
from securebuild_tasks.keys import load_private_key
from tests.support.realparts import make_key


def _listed(socket: Path) -> list[str]:
    done = subprocess.run(
        ["ssh-add", "-l", "-E", "sha256"],
        env={"SSH_AUTH_SOCK": str(socket)},
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in done.stdout.splitlines() if line.strip()]


def test_agent_holds_one_key_in_private_dir(tmp_path: Path) -> None:
    """The agent's directory is 0700, its socket 0600, and it holds exactly the one key."""
    key = make_key(tmp_path, "deploy")
    loaded = load_private_key(key.private_bytes, "key", lambda: b"")
    with private_workdir() as workdir, EphemeralAgent(workdir, lifetime=60) as agent:
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        assert stat.S_IMODE(agent.socket.stat().st_mode) == 0o600
        agent.add(loaded.openssh)
        listed = _listed(agent.socket)
        assert len(listed) == 1
        assert loaded.fingerprint in listed[0]
    assert not workdir.exists()


def test_agent_and_dir_gone_after_error(tmp_path: Path) -> None:
    """An exception inside the block still stops the agent and removes the directory."""
    key = make_key(tmp_path, "deploy")
    loaded = load_private_key(key.private_bytes, "key", lambda: b"")
    seen: dict[str, object] = {}

    def failing_build() -> None:
        with private_workdir() as workdir, EphemeralAgent(workdir, lifetime=60) as agent:
            agent.add(loaded.openssh)
            seen.update(workdir=workdir, pid=int((workdir / "agent.pid").read_text()))
            raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        failing_build()
    workdir, pid = seen["workdir"], seen["pid"]
    assert isinstance(workdir, Path)
    assert isinstance(pid, int)
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_agent_refuses_garbage_without_echoing_it(tmp_path: Path) -> None:
    """ssh-add's refusal becomes an AgentError that does not repeat the input."""
    with (
        private_workdir() as workdir,
        EphemeralAgent(workdir, lifetime=60) as agent,
        pytest.raises(AgentError) as info,
    ):
        agent.add(b"not-a-key-but-secret-looking-bytes-12345\n")
    assert "secret-looking" not in str(info.value)


def test_reap_removes_dirs_of_dead_runs(tmp_path: Path) -> None:
    """A work dir whose owner died (SIGKILL) is removed with its agent by the next run."""
    stale = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (stale / "owner").write_text(f"{dead.pid}\n")
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(stale / "agent.sock")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (stale / "agent.pid").write_text(f"{agent.pid}\n")
    live = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (live / "owner").write_text(f"{os.getpid()}\n")
    try:
        reaped = reap_stale_workdirs()
        assert stale in reaped
        assert not stale.exists()
        assert live.exists()
        # The agent was told to stop: it exits (wait would time out otherwise).
        assert agent.wait(timeout=10) is not None
    finally:
        if agent.poll() is None:
            agent.kill()
        subprocess.run(["rm", "-rf", str(stale), str(live)], check=False)
