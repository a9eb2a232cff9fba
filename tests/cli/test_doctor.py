"""`doctor`: every problem is a FAIL line with a fix, and a clean setup passes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli.test_flags import RECORDER
from tests.support.cli import run_cli, stand_in_docker, user_env
from tests.support.realparts import Agent, make_key


def _doctor(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("securebuild_tasks", project, "doctor", env=env)


def test_doctor_finds_each_problem_then_passes(tmp_path: Path) -> None:
    """Unpinned host, loose key file, secret ARG and keyscan each FAIL; fixed, all ok."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("p @ git+ssh://git@127.0.0.1:2222/p.git@v1\n")
    (project / "Dockerfile").write_text(
        "FROM python:3.12-slim\nARG SSH_PRIVATE_KEY\nRUN ssh-keyscan github.com >> k\n"
    )
    docker = stand_in_docker(tmp_path, RECORDER)
    key = make_key(tmp_path / "keys", "deploy")
    key.private.chmod(0o644)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    env = user_env(
        RECORD=str(tmp_path / "argv"),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        SECUREBUILD_DOCKER=str(docker),
        SECUREBUILD_KEY_SOURCE="file",
        SECUREBUILD_KEY_FILE=str(key.private),
        SECUREBUILD_KNOWN_HOSTS=str(known_hosts),
        SECUREBUILD_PASSPHRASE_SOURCE="prompt",
    )
    done = _doctor(project, env)
    assert done.returncode == 1
    fails = {
        line.split(":")[0].split(None, 1)[1]
        for line in done.stdout.splitlines()
        if line.startswith("FAIL")
    }
    assert fails == {"key source", "known_hosts", "Dockerfile"}
    assert "chmod 600" in done.stdout
    assert "127.0.0.1:2222" in done.stdout
    assert "SSH_PRIVATE_KEY" in done.stdout
    assert "doctor found 3 problem(s)" in done.stderr

    key.private.chmod(0o600)
    host_key = make_key(tmp_path / "host", "host")
    kind, body = host_key.public_line.split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:2222 {kind} {body}\n")
    (project / "Dockerfile").write_text(
        "FROM python:3.12-slim\nRUN --mount=type=ssh pip install -r requirements.txt\n"
    )
    fixed = _doctor(project, env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert all(line.startswith("ok") for line in fixed.stdout.splitlines())

    # A byte that is not UTF-8 (a Latin-1 comment) changes nothing for the checks.
    (project / "Dockerfile").write_bytes(b"# caf\xe9\n" + (project / "Dockerfile").read_bytes())
    latin = _doctor(project, env)
    assert latin.returncode == 0, latin.stdout + latin.stderr

    # What only the build used to read: a pip config that is not there, and a
    # setting only buildx can carry out, on a client without it.
    broken = {
        **env,
        "SECUREBUILD_PIP_CONFIG": str(tmp_path / "no-such" / "pip.conf"),
        "SECUREBUILD_CACHE_TO": f"type=local,dest={tmp_path / 'cache'}",
    }
    both = _doctor(project, broken)
    assert both.returncode == 1
    fails = [line for line in both.stdout.splitlines() if line.startswith("FAIL")]
    assert [line.split(":")[0] for line in fails] == [
        "FAIL  builder settings",
        "FAIL  build plan",
    ], both.stdout
    assert "setting cache_to needs docker buildx" in fails[0]
    assert "pip.conf" in fails[1]


def test_doctor_checks_the_index_token_without_showing_it(tmp_path: Path) -> None:
    """With index_url, a missing token is a FAIL naming where it was looked for; with
    SECUREBUILD_INDEX_TOKEN set it is ok, and the token is never printed."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("six==1.16.0\n")
    docker = stand_in_docker(tmp_path, RECORDER)
    key = make_key(tmp_path / "keys", "deploy")
    env = user_env(
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        SECUREBUILD_DOCKER=str(docker),
        SECUREBUILD_KEY_FILE=str(key.private),
        SECUREBUILD_INDEX_URL="https://pypi.example.com/simple/",
        SECUREBUILD_INDEX_TOKEN_SOURCE="environment",
    )
    missing = _doctor(project, env)
    assert missing.returncode == 1
    assert "FAIL  index token: " in missing.stdout
    assert "SECUREBUILD_INDEX_TOKEN is not set" in missing.stdout

    token = "tok-" + "d0c7" * 10
    found = _doctor(project, {**env, "SECUREBUILD_INDEX_TOKEN": token})
    assert "ok    index token: index token from SECUREBUILD_INDEX_TOKEN for pypi.example.com" in (
        found.stdout
    )
    assert token not in found.stdout + found.stderr


def test_doctor_needs_no_keyring_for_an_agent_key(tmp_path: Path) -> None:
    """With the key in an ssh-agent and no usable keyring, nothing the build reads
    is missing: doctor passes (the keyring is checked where the build would read
    it). The Dockerfile line says what it found: no SSH step, and none needed."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("six==1.16.0\n")
    (project / "Dockerfile").write_text("FROM python:3.12-slim\nRUN pip install six\n")
    agent = Agent(tmp_path / "agent").start()
    try:
        agent.add(make_key(tmp_path / "keys", "deploy"))
        env = user_env(
            DOCKER_HOST="unix:///nonexistent/docker.sock",
            SECUREBUILD_DOCKER=str(stand_in_docker(tmp_path, RECORDER)),
            SECUREBUILD_KEY_SOURCE="agent",
            SSH_AUTH_SOCK=str(agent.socket),
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        )
        done = _doctor(project, env)
        # A build with an SSH step of its own needs the key: from the keyring, here.
        (project / "Dockerfile").write_text(
            "FROM python:3.12-slim\nRUN --mount=type=ssh pip install six\n"
        )
        keyring = _doctor(project, {**env, "SECUREBUILD_KEY_SOURCE": "keyring"})
    finally:
        agent.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if line[6:].startswith("keyring:")]
    assert "ok    Dockerfile: " in done.stdout
    assert "no SSH step, and the requirements need none" in done.stdout
    assert "uses SSH forwarding" not in done.stdout
    # Asked for the keyring by a build that needs a key, the setup fails on it.
    assert keyring.returncode == 1
    assert "FAIL  keyring: " in keyring.stdout


def test_doctor_needs_no_key_where_the_build_needs_none(tmp_path: Path) -> None:
    """A build that fetches nothing over SSH runs without a key: doctor says the key
    source is not needed rather than failing a CI job that gates on it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("six==1.16.0\n")
    docker = stand_in_docker(tmp_path, RECORDER)
    env = user_env(
        RECORD=str(tmp_path / "argv"),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        SECUREBUILD_DOCKER=str(docker),
        SECUREBUILD_KEY_SOURCE="auto",
        SECUREBUILD_AGENT_SOCKET=str(tmp_path / "no-agent.sock"),
    )
    env.pop("SSH_AUTH_SOCK", None)
    done = _doctor(project, env)
    assert "ok    key source: none needed: the build fetches nothing over SSH" in done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    # Nor is the keyring the key would come from, when none is needed.
    unkeyed = _doctor(
        project,
        {
            **env,
            "SECUREBUILD_KEY_SOURCE": "keyring",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        },
    )
    assert unkeyed.returncode == 0, unkeyed.stdout + unkeyed.stderr
    assert "keyring" not in unkeyed.stdout.replace("key source", "")
    (project / "requirements.txt").write_text("p @ git+ssh://git@127.0.0.1:2222/p.git@v1\n")
    needed = _doctor(project, env)
    assert needed.returncode == 1
    assert "FAIL  key source:" in needed.stdout


def test_doctor_says_whether_the_locks_build_backends_are_checked(tmp_path: Path) -> None:
    """A lock of git packages whose build backends are pinned: ok, naming them; one
    made before they were pinned (or whose lock step could not pin them): FAIL,
    with what to run."""
    from securebuild_tasks.lockfile import find_input, finish

    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.in").write_text("p @ git+ssh://git@127.0.0.1:2222/p.git@v1\n")
    locked = "p @ git+ssh://git@127.0.0.1:2222/p.git@" + "0" * 40 + "\n"
    lock = project / "requirements.lock"
    lock.write_text(finish(locked, find_input(project, "")))
    kind, body = make_key(tmp_path / "host", "host").public_line.split()[:2]
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:2222 {kind} {body}\n")
    env = user_env(
        RECORD=str(tmp_path / "argv"),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        SECUREBUILD_DOCKER=str(stand_in_docker(tmp_path, RECORDER)),
        SECUREBUILD_KNOWN_HOSTS=str(tmp_path / "known_hosts"),
    )
    done = _doctor(project, env)
    assert done.returncode == 1
    assert (
        "FAIL  build backends: requirements.lock pins no build backend for its git packages,"
        " so the backends that build them are not hash-checked: run `inv lock` again to pin"
        " them"
    ) in done.stdout.splitlines()
    pins = (
        f"setuptools==80.10.2 \\\n    --hash=sha256:{'e' * 64}\n"
        f"wheel==0.48.0 --hash=sha256:{'f' * 64}\n"
    )
    lock.write_text(finish(locked, find_input(project, ""), (), pins))
    again = _doctor(project, env)
    assert (
        "ok    build backends: pinned by the lock, hash-checked by uv: setuptools, wheel"
        in again.stdout.splitlines()
    ), again.stdout
    assert "FAIL  build backends" not in again.stdout
