"""The ephemeral ssh-agent and its private work directory, with the real ssh-agent."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from securebuild_tasks.agent import (
    MAX_SOCKET_PATH,
    WORKDIR_PREFIX,
    EphemeralAgent,
    private_workdir,
    reap_stale_workdirs,
    socket_in,
)
from securebuild_tasks.errors import AgentError
from securebuild_tasks.keys import AgentKeySource, load_private_key
from securebuild_tasks.settings import Settings
from tests.support.realparts import Agent, make_key


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
            seen.update(workdir=workdir, pid=agent._agent_pid)
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


# The owner takes a hang-up as a terminal's process does, even when the tests
# themselves run with SIGHUP ignored (under nohup), which its children inherit.
OWNER = """\
import signal, sys, time
from pathlib import Path
from securebuild_tasks.agent import EphemeralAgent, private_workdir
from securebuild_tasks.keys import load_private_key

signal.signal(signal.SIGHUP, signal.SIG_DFL)
key = load_private_key(Path(sys.argv[1]).read_bytes(), "key", lambda: b"")
with private_workdir() as workdir, EphemeralAgent(workdir, lifetime=600) as agent:
    agent.add(key.openssh)
    print(agent.socket, agent._agent_pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP])
def test_agent_dies_with_its_owner(tmp_path: Path, signum: int) -> None:
    """An owner killed outright (or hung up on) takes its agent and key with it."""
    key = make_key(tmp_path, "deploy")
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(key.private)], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    socket_path, agent_pid = owner.stdout.readline().split()
    assert len(_listed(Path(socket_path))) == 1
    os.kill(owner.pid, signum)
    owner.wait(timeout=10)
    deadline = time.monotonic() + 20  # ssh-agent checks its parent every 10 s
    while time.monotonic() < deadline and _alive(int(agent_pid)):
        time.sleep(0.2)
    assert not _alive(int(agent_pid))
    assert _listed(Path(socket_path)) == []
    workdir = Path(socket_path).parent
    if workdir.exists():  # SIGKILL: nothing ran; the next run reaps the directory
        assert workdir in reap_stale_workdirs()
    assert not workdir.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    # A zombie waiting for its reaper is gone for our purposes.
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_reap_leaves_live_runs_alone(tmp_path: Path) -> None:
    """A work dir whose owner is alive is not touched; a dead owner's dir is removed."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (stale / "owner").write_text(f"{dead.pid}\n")
    live = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (live / "owner").write_text(f"{os.getpid()}\n")
    try:
        assert stale in reap_stale_workdirs(dry_run=True)
        assert stale.exists()
        reaped = reap_stale_workdirs()
        assert stale in reaped
        assert live not in reaped
        assert not stale.exists()
        assert live.exists()
    finally:
        subprocess.run(["rm", "-rf", str(stale), str(live)], check=False)


def test_reap_works_where_the_system_has_no_user_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows has no os.getuid: the reaper still removes a killed run's work dir
    (which may hold a .netrc with the index token) and keeps a live one's."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delattr(os, "getuid")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (stale / "owner").write_text(f"{dead.pid}\n")
    (stale / "netrc").write_text("machine i login __token__ password x\n")
    live = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (live / "owner").write_text(f"{os.getpid()}\n")
    assert reap_stale_workdirs() == [stale]
    assert not stale.exists()
    assert live.exists()


def test_reap_leaves_folders_it_did_not_make_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the tool's own work dirs are reaped: a user's securebuild-notes, or any
    folder with files but no owner, stays however old; an empty orphan goes."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = time.time() - 2 * 3600
    notes = tmp_path / "securebuild-notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine\n")
    unowned = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (unowned / "data").write_text("no owner file\n")
    orphan = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    for path in (notes, unowned, orphan):
        os.utime(path, (old, old))
    assert reap_stale_workdirs() == [orphan]
    assert (notes / "todo.txt").is_file()
    assert (unowned / "data").is_file()
    assert not orphan.exists()


def test_socket_path_too_long_is_said_before_anything_starts(tmp_path: Path) -> None:
    """A TMPDIR deep enough to make the agent's socket path unbindable is one line
    saying to shorten it, for the ephemeral agent and for the agent_key proxy."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with pytest.raises(AgentError, match="point TMPDIR at a shorter directory") as raised:
        EphemeralAgent(deep, lifetime=60)
    assert f"over the {MAX_SOCKET_PATH} a Unix socket path may have" in raised.value.line()

    agent = Agent(tmp_path / "agent").start()
    try:
        agent.add(make_key(tmp_path, "chosen"))
        source = AgentKeySource(Settings(agent_socket=str(agent.socket), agent_key="chosen"))
        with pytest.raises(AgentError, match="point TMPDIR at a shorter directory"):
            source.forward(deep).__enter__()
        assert list(deep.iterdir()) == []
    finally:
        agent.stop()
    short = socket_in(tmp_path, "agent.sock")
    assert short == tmp_path / "agent.sock"
