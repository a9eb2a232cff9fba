"""Property 8: faults in the middle of a build end with one clear line, a non-zero
exit, no traceback, and nothing left behind.

The git server's fetch is held open (after the key authenticated) so each fault
lands while the build's private step is mid-fetch: sshd killed, the engine
stopped, the key taken out of the user's agent. Then a full temp directory and
a git server gone before the build. Each test runs its own git server, so the
session's stays up; "nothing left" is the tool's work directories and agents
(`securebuild_leftovers`) and any file in the temp directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.conftest import need
from tests.integration.test_build_image import _assert_one_line_error
from tests.support.faults import (
    BackgroundRun,
    HoldingGitServer,
    second_dockerd,
    tiny_full_tmpfs,
)
from tests.support.fixtures import Lab, Project, securebuild_leftovers
from tests.support.leaks import find_in_bytes, key_needles
from tests.support.procs import wait_for
from tests.support.realparts import Agent, GitServer, SSHKey, make_key

pytestmark = pytest.mark.engine


@pytest.fixture
def key(tmp_path: Path) -> SSHKey:
    """A deploy key made for this test."""
    return make_key(tmp_path / "keys", "p8-deploy")


@pytest.fixture
def holding(project: Project, key: SSHKey, tmp_path: Path) -> Iterator[HoldingGitServer]:
    """A git server of the test's own that holds fetches; the project needs it."""
    server = HoldingGitServer(tmp_path / "git").start()
    try:
        server.authorize(key)
        url = server.create_package("heldpkg", "v1.0.0", "1.0.0")
        project.requirements(f"heldpkg @ git+{url}@v1.0.0\n")
        (project.path / "known_hosts").write_text(server.known_hosts_line())
        yield server
    finally:
        server.release()
        server.kill()


def _file_key(key: SSHKey) -> dict[str, str]:
    return {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(key.private)}


def _start(project: Project, tmp_path: Path, env: dict[str, str]) -> BackgroundRun:
    return BackgroundRun(
        project.path, ["build-image"], {**project.env, **env}, tmp_path / "build-logs"
    )


def _held(run: BackgroundRun, server: HoldingGitServer) -> None:
    """Wait until the private step's fetch is being held (the build must not end first)."""
    wait_for(lambda: server.started or not run.running(), "the private fetch", timeout=300)
    assert run.running(), "the build ended before its private fetch"


def _assert_clean(done: subprocess.CompletedProcess[str], key: SSHKey, *ours: Path) -> None:
    """No key bytes in the output, no work dir or agent, no file in the temp dir."""
    assert find_in_bytes((done.stdout + done.stderr).encode(), key_needles(key.private_bytes)) == []
    assert securebuild_leftovers() == []
    tmp = Path(tempfile.gettempdir())
    assert sorted(p for p in tmp.iterdir() if p not in ours) == []


def test_sshd_killed_during_the_fetch(
    project: Project, holding: HoldingGitServer, key: SSHKey, tmp_path: Path
) -> None:
    """The git server dies mid-fetch: one line, exit 6, the ephemeral agent gone."""
    run = _start(project, tmp_path, _file_key(key))
    _held(run, holding)
    holding.kill()
    done = run.finish()
    # pip reports a dropped connection as a failed build; uv retries, and then
    # finds the port closed ("git host ... is unreachable"). Both are exit 6.
    _assert_one_line_error(done, 6)
    _assert_clean(done, key)


def test_engine_stopped_during_the_build(
    project: Project,
    holding: HoldingGitServer,
    key: SSHKey,
    engine: Engine,
    base_image: str,
    tmp_path: Path,
) -> None:
    """A second dockerd builds and is stopped while the private step fetches: one
    line saying the engine went away (exit 5, not "build failed"), no agent or
    work dir left, the main engine untouched."""
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    need(os.geteuid() == 0 and Path(dockerd).exists(), "a second dockerd needs root and dockerd")
    with second_dockerd(engine.docker, [base_image]) as daemon:
        run = _start(project, tmp_path, {**_file_key(key), "DOCKER_HOST": daemon.host})
        _held(run, holding)
        daemon.stop()
        done = run.finish()
    # Gone, or still shutting down: either way the line points at the engine.
    _assert_one_line_error(done, 5, "Docker engine", "during the build")
    _assert_clean(done, key)


def test_key_removed_from_the_agent_mid_build(
    project: Project,
    holding: HoldingGitServer,
    key: SSHKey,
    agent: Agent,
    engine: Engine,
    tmp_path: Path,
) -> None:
    """`ssh-add -D` on the user's agent while the private step fetches.

    The tool forwards the user's agent as it is (it holds no copy of the key),
    so what happens next is the agent's answer: a fetch that already
    authenticated finishes, and any later ssh connection of the step is
    refused. Either way the run must end as a success or as the one clear line
    naming the refused key (exit 3), never a traceback or a leftover.
    """
    agent.add(key)
    env = {"SECUREBUILD_KEY_SOURCE": "agent", "SSH_AUTH_SOCK": str(agent.socket)}
    run = _start(project, tmp_path, env)
    _held(run, holding)
    agent.clear()
    listed = subprocess.run(["ssh-add", "-l"], env=agent.env(), capture_output=True, check=False)
    assert listed.returncode == 1  # the agent is empty now
    holding.release()
    done = run.finish()
    if done.returncode != 0:
        _assert_one_line_error(done, 3, "refused the forwarded key")
    else:  # what this setup gives: pip's one ssh connection authenticated before the hold
        assert "Traceback" not in done.stderr
        inspect = [engine.docker, "image", "inspect", project.image]
        assert subprocess.run(inspect, capture_output=True, check=False).returncode == 0
    _assert_clean(done, key, agent.socket.parent)


@pytest.mark.parametrize("free", [0, 4096], ids=["full", "one-page-free"])
def test_full_temp_directory(project: Project, lab: Lab, free: int, tmp_path: Path) -> None:
    """TMPDIR on a 1 MB tmpfs, filled up.

    Entirely full, Python's tempfile passes over it to the next candidate (it
    probes each by writing a file): here TEMP, a directory of the test's own,
    so anything left there is seen. With one page free that probe succeeds and
    the tool's own writes hit the full disk. Either way: success or one clear
    line, no traceback, and no file left on the tmpfs or in the fallback.
    """
    need(os.geteuid() == 0, "mounting a tmpfs needs root")
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    env = {**_file_key(lab.deploy), "TMPDIR": str(tmp_path / "tiny"), "TEMP": str(fallback)}
    with tiny_full_tmpfs(tmp_path / "tiny", free=free) as tiny:
        done = project.inv("build-image", env=env)
        left = sorted(p.name for p in tiny.iterdir())
    assert left == ["filler"]
    assert sorted(fallback.iterdir()) == []
    if free:
        _assert_one_line_error(done, 1, "temp directory", str(tiny), "No space left")
        assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1
    else:
        assert done.returncode == 0, done.stderr[-3000:]
    _assert_clean(done, lab.deploy)


def test_git_server_gone_before_the_build(project: Project, key: SSHKey, tmp_path: Path) -> None:
    """The pinned git server stops (its port closed) before the build: exit 6 naming
    host and port as unreachable, nothing left."""
    server = GitServer(tmp_path / "git").start()
    server.authorize(key)
    url = server.create_package("gonepkg", "v1.0.0", "1.0.0")
    (project.path / "known_hosts").write_text(server.known_hosts_line())
    project.requirements(f"gonepkg @ git+{url}@v1.0.0\n")
    server.stop()
    done = project.inv("build-image", env=_file_key(key))
    _assert_one_line_error(done, 6, f"127.0.0.1 port {server.port} is unreachable")
    _assert_clean(done, key)
