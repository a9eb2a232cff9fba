"""Property 2: no process's argv or environment holds key bytes while a real build runs.

What `ps e` (or anyone reading /proc) sees during a build: the tool, every
process below it (the docker client, the ephemeral ssh-agent and its command,
ssh-add), the private RUN step's processes inside the build container (pip,
git, ssh, the package's setup.py), and, to leave nothing out, every other
process on the machine. A package of the test's own sleeps in its setup.py,
so the private step stays busy while samples are taken; the build is then
interrupted like Ctrl-C does, and must clean up.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import stop_and_collect
from tests.support.fixtures import Lab, Project, own_slow_package, securebuild_leftovers
from tests.support.leaks import HEADER, find_in_bytes, key_needles, raw_needles
from tests.support.procs import (
    Snapshot,
    alive,
    all_pids,
    descendants,
    parents,
    pids_whose_cmdline_has,
    snapshot,
    wait_for,
    workdirs,
)
from tests.support.realparts import make_key

pytestmark = pytest.mark.engine

PRIVATE_STEP = b"securebuild-private-step"  # the template's marker on its private RUN steps
ROUNDS_AFTER_ALL_SEEN = 5


def _leaks(snap: Snapshot, needles: list[bytes]) -> list[str]:
    found = []
    for field, data in (("cmdline", snap.cmdline), ("environ", snap.environ)):
        if find_in_bytes(data, needles) or HEADER.search(data):
            found.append(f"{snap.pid} {snap.name} {field}")
    return found


def test_no_key_bytes_in_any_process_during_a_build(
    project: Project, lab: Lab, tmp_path: Path
) -> None:
    """Sampled several times mid-build: no key bytes in any argv or environment."""
    key = make_key(tmp_path / "keys", "p2-key")
    lab.server.authorize(key)
    needles = key_needles(key.private_bytes) + raw_needles(key.private_bytes)
    # The sampler can fail: a process holding the key in its environment is caught.
    decoy = subprocess.Popen(["sleep", "60"], env={"DECOY": key.private_bytes.decode()})
    try:
        wait_for(lambda: getattr(snapshot(decoy.pid), "name", "") == "sleep", "the decoy's exec")
        decoy_snap = snapshot(decoy.pid)
        assert decoy_snap is not None
        assert _leaks(decoy_snap, needles) == [f"{decoy.pid} sleep environ"]
    finally:
        decoy.kill()
        decoy.wait()
    package, url = own_slow_package(lab, "p2slow")  # names this build's own processes
    project.requirements(f"{package} @ git+{url}@v0.1.0\n")
    before = workdirs()

    process = project.start(
        "build-image",
        env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(key.private)},
    )
    leaks: list[str] = []
    tool_tree: dict[int, Snapshot] = {}  # the tool's descendants, as last seen
    in_step: dict[int, Snapshot] = {}  # this build's private-step processes
    rounds = after_all_seen = 0
    try:
        deadline = time.monotonic() + 300
        while after_all_seen < ROUNDS_AFTER_ALL_SEEN:
            seen = f"saw {sorted(_names(tool_tree))} and {sorted(_names(in_step))} in the step"
            assert process.poll() is None, f"the build ended before it was sampled: {seen}"
            assert time.monotonic() < deadline, seen
            parent_of = parents()
            below_tool = descendants([process.pid], parent_of)
            below_steps = descendants(pids_whose_cmdline_has(PRIVATE_STEP), parent_of)
            for pid in all_pids():
                snap = snapshot(pid)
                if snap is None:
                    continue
                leaks.extend(_leaks(snap, needles))
                if pid in below_tool:
                    tool_tree[pid] = snap
                if pid in below_steps and (package in snap.cwd or package in " ".join(snap.argv)):
                    in_step[pid] = snap
            rounds += 1
            # The package's setup.py sleeps for minutes in a directory named after
            # it: sampling waits for that, not for git's short fetch, which may be missed.
            building = any(f"{package}-sleeping-" in s.cwd for s in in_step.values())
            if {"docker", "ssh-agent"} <= _names(tool_tree) and building:
                after_all_seen += 1
            time.sleep(0.5)
    finally:
        output = stop_and_collect(process)

    assert leaks == []
    # Not vacuous: the docker client, the ephemeral agent and this build's private
    # step (inside the build container) were all among the processes read, several times.
    assert rounds >= ROUNDS_AFTER_ALL_SEEN
    clients = [s for s in tool_tree.values() if s.name == "docker" and "build" in s.argv]
    assert clients, sorted(_names(tool_tree))
    assert b"DOCKER_BUILDKIT=1" in clients[0].environ  # environments were really read
    ssh_option = clients[0].argv[clients[0].argv.index("--ssh") + 1]
    assert re.fullmatch(r"default=/\S+/securebuild-[^/]+/agent\.sock", ssh_option), ssh_option
    assert any(b"SSH_AUTH_SOCK=" in s.environ for s in in_step.values())  # the forwarded agent

    # Interrupted: no traceback, no agent, no work directory, no private step left running.
    assert process.returncode != 0
    assert "Traceback" not in output
    assert find_in_bytes(output.encode(), needles) == []
    assert securebuild_leftovers() == []
    assert workdirs() - before == set()
    agents = [pid for pid, s in tool_tree.items() if s.name == "ssh-agent"]
    assert not any(alive(pid) for pid in agents)
    wait_for(lambda: not any(alive(pid) for pid in in_step), "the private step to be cancelled")


def _names(snaps: dict[int, Snapshot]) -> set[str]:
    return {s.name for s in snaps.values()}
