"""Property 4: another local user cannot use the ephemeral agent of a running build.

A real unprivileged user (created once, idempotently) probes the agent socket
of a build that is busy in its private step: `ssh-add -l` and a raw
`connect()`, both run through util-linux's `setpriv`. The test's own TMPDIR is
made traversable for that user, so what stops it is the tool's own 0700 work
directory. Controls prove the probe can succeed: the owner's identical
`ssh-add -l` lists the key, and the same user's raw connect reaches a socket
that permissions do not guard.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.cli import stop_and_collect
from tests.support.fixtures import Lab, Project, own_slow_package, securebuild_leftovers
from tests.support.procs import new_agent_sockets, wait_for, workdirs
from tests.support.realparts import Agent, make_key

pytestmark = pytest.mark.engine

OTHER_USER = "sbt-other"
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by any user, unlike the test venv
KEY_LIFETIME = 45  # seconds: long enough to reach the slow step, short enough to watch expire
CONNECT = (
    "import errno, socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "try:\n"
    "    s.connect(sys.argv[1])\n"
    "except OSError as e:\n"
    "    print(errno.errorcode[e.errno]); sys.exit(1)\n"
    "print('connected')\n"
)


@pytest.fixture(scope="session")
def other_user() -> pwd.struct_passwd:
    """An unprivileged local user (no home, no shell), made once per machine."""
    need(os.geteuid() == 0, "creating a second local user needs root")
    need(bool(shutil.which("setpriv")), "setpriv (util-linux) is missing")
    need(Path(SYSTEM_PYTHON).exists(), f"{SYSTEM_PYTHON} is missing")
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        pass
    need(bool(shutil.which("useradd")), "useradd (passwd) is missing")
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # another test session may have made it at the same moment
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        pytest.fail(f"could not create user {OTHER_USER}: {made.stderr}")


def _as(user: pwd.struct_passwd, *argv: str, sock: Path) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user`` (uid, gid, no supplementary groups, a bare environment)."""
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--clear-groups",
            "--",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"SSH_AUTH_SOCK={sock}",
            *argv,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_second_uid_cannot_use_the_ephemeral_agent(
    project: Project,
    lab: Lab,
    agent: Agent,
    tmp_path: Path,
    private_tmpdir: Path,
    other_user: pwd.struct_passwd,
) -> None:
    """The other uid is refused by the 0700 work dir; the owner sees one key, which expires."""
    owner = pwd.getpwuid(os.getuid())
    key = make_key(tmp_path / "keys", "p4-key")
    lab.server.authorize(key)
    package, url = own_slow_package(lab, "p4slow")
    project.requirements(f"{package} @ git+{url}@v0.1.0\n")
    # The per-test TMPDIR is 0700: open it up so only the tool's own directory stands guard.
    private_tmpdir.chmod(0o711)
    before = workdirs()
    process = project.start(
        "build-image",
        env={
            "SECUREBUILD_KEY_SOURCE": "file",
            "SECUREBUILD_KEY_FILE": str(key.private),
            "SECUREBUILD_KEY_LIFETIME": str(KEY_LIFETIME),
        },
    )
    try:
        wait_for(lambda: bool(new_agent_sockets(before)), "the ephemeral agent's socket")
        [sock] = new_agent_sockets(before)
        workdir = sock.parent
        assert process.poll() is None

        # Modes and owner of the tool's own directory and socket.
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        assert workdir.stat().st_uid == owner.pw_uid
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600

        # The owner: exactly one identity, the build's key.
        listed = _as(owner, "ssh-add", "-l", sock=sock)
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.splitlines()) == 1, listed.stdout
        assert key.fingerprint in listed.stdout
        assert _as(owner, SYSTEM_PYTHON, "-c", CONNECT, str(sock), sock=sock).stdout == (
            "connected\n"
        )

        # The other uid: refused at the directory, by both probes.
        refused = _as(other_user, "ssh-add", "-l", sock=sock)
        assert refused.returncode != 0
        assert "Permission denied" in refused.stderr, refused.stdout + refused.stderr
        assert key.fingerprint not in refused.stdout
        raw = _as(other_user, SYSTEM_PYTHON, "-c", CONNECT, str(sock), sock=sock)
        assert raw.stdout == "EACCES\n", raw.stdout + raw.stderr
        listing = _as(other_user, "ls", str(workdir), sock=sock)
        assert listing.returncode != 0
        assert "Permission denied" in listing.stderr

        # Control: the same user's probe connects where permissions do not stop it
        # (a socket in a traversable directory; ssh-agent's own peer-uid check then
        # refuses to serve it, a second line of defence).
        agent.socket.parent.chmod(0o711)
        agent.socket.chmod(0o666)
        reached = _as(other_user, SYSTEM_PYTHON, "-c", CONNECT, str(agent.socket), sock=sock)
        assert reached.stdout == "connected\n", reached.stdout + reached.stderr

        # The key has a lifetime: it leaves the agent while the agent (and build) live on.
        wait_for(
            lambda: (
                process.poll() is not None
                or "no identities" in _as(owner, "ssh-add", "-l", sock=sock).stdout
            ),
            "the key's lifetime to run out",
            timeout=KEY_LIFETIME + 120,
        )
        assert sock.exists()
        assert process.poll() is None, "the build ended before its key expired"
    finally:
        output = stop_and_collect(process)
    assert process.returncode != 0
    assert "Traceback" not in output
    assert re.search(r"key SHA256:\S+ from file", output), output[-2000:]
    assert securebuild_leftovers() == []
    assert not workdir.exists()
