"""Builds on an engine other than the default one: DOCKER_HOST and a docker context.

A second, real dockerd on a socket of its own stands in for a remote builder.
The agent socket is forwarded by the client, so the key never travels to the
other engine's storage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine, sdk_client
from tests.conftest import need
from tests.support.faults import second_dockerd
from tests.support.fixtures import Lab, Project
from tests.support.leaks import find_in_tree, key_needles
from tests.support.realparts import Agent, GitServer, make_key

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def second_engine(engine: Engine, base_image: str) -> Iterator[tuple[str, Path]]:
    """A second dockerd (own socket, data root and exec root) with the base image loaded."""
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    need(os.geteuid() == 0 and Path(dockerd).exists(), "a second dockerd needs root and dockerd")
    with second_dockerd(engine.docker, [base_image]) as daemon:
        yield daemon.host, daemon.data_root


def _ping_once(docker: str) -> None:
    """Ping the engine through a fresh SDK client, closing it either way."""
    client = sdk_client(docker)
    try:
        client.ping()
    finally:
        client.close()


def _exists(docker: str, image: str, **env: str) -> bool:
    done = subprocess.run(
        [docker, "image", "inspect", image],
        env={**os.environ, **env},
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_docker_host_and_context_reach_the_other_engine(
    project: Project, lab: Lab, engine: Engine, second_engine: tuple[str, Path], tmp_path: Path
) -> None:
    """DOCKER_HOST, then a docker context, send the build to the second engine, key-free."""
    host, data_root = second_engine
    env = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}
    done = project.inv("build-image", env={**env, "DOCKER_HOST": host})
    assert done.returncode == 0, done.stderr[-3000:]
    assert _exists(engine.docker, project.image, DOCKER_HOST=host)
    assert not _exists(engine.docker, project.image)

    # A docker context: the SDK cannot read it, the CLI can; the tool must follow the CLI.
    config = tmp_path / "docker-config"
    config.mkdir()
    subprocess.run(
        [engine.docker, "context", "create", "sbt-second", "--docker", f"host={host}"],
        env={**os.environ, "DOCKER_CONFIG": str(config)},
        capture_output=True,
        check=True,
    )
    project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\n# via a context\n")
    via_context = project.inv(
        "build-image",
        "--tag",
        "ctx",
        env={**env, "DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "sbt-second"},
    )
    assert via_context.returncode == 0, via_context.stderr[-3000:]
    image = project.image.replace(":latest", ":ctx")
    assert _exists(engine.docker, image, DOCKER_HOST=host)
    assert not _exists(engine.docker, image)
    assert find_in_tree(data_root, key_needles(lab.deploy.private_bytes)) == []


def test_ssh_docker_host_builds_on_the_engine_behind_sshd(
    project: Project,
    lab: Lab,
    engine: Engine,
    agent: Agent,
    second_engine: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DOCKER_HOST=ssh://root@127.0.0.1:PORT reaches the second dockerd through a real
    sshd (strict host key checking against a pinned known_hosts, the login key in the
    user's agent): the SDK answers over ssh, the build lands there, and that engine's
    data root holds no byte of the forwarded deploy key."""
    host, data_root = second_engine
    # sshd sets DOCKER_HOST for the session, so `docker system dial-stdio` on the
    # "remote" side talks to the second dockerd, not the shared one.
    sshd = GitServer(tmp_path / "sshd", extra_config=(f"SetEnv DOCKER_HOST={host}",)).start()
    try:
        login = make_key(tmp_path / "login", "engine-login")
        sshd.authorize(login)
        agent.add(login)
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(sshd.known_hosts_line())
        config = tmp_path / "ssh_config"
        config.write_text(
            "Host 127.0.0.1\n"
            "  StrictHostKeyChecking yes\n"
            f"  UserKnownHostsFile {known_hosts}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  IdentitiesOnly no\n"
            "  BatchMode yes\n"
        )
        # ssh finds ~/.ssh/config through the passwd entry, not $HOME: a wrapper
        # first on PATH gives both docker clients (CLI and SDK) this config.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {config} "$@"\n')
        wrapper.chmod(0o755)
        ssh_host = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
        env = {
            "DOCKER_HOST": ssh_host,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "SSH_AUTH_SOCK": str(agent.socket),
            "SECUREBUILD_KEY_SOURCE": "file",
            "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
        }
        with monkeypatch.context() as patched:
            for name, value in env.items():
                patched.setenv(name, value)
            client = sdk_client(engine.docker)
            try:
                assert client.ping() is True
                assert client.info()["DockerRootDir"] == data_root.as_posix()
            finally:
                client.close()
            # The system's ssh with the user's config: a host key that is not the
            # pinned one is refused.
            known_hosts.write_text(sshd.known_hosts_line(lab.server.host_key))
            with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal will do
                _ping_once(engine.docker)
            known_hosts.write_text(sshd.known_hosts_line())

        project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\n# over ssh\n")
        done = project.inv("build-image", "--json", env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["key_source"] == "file"
        assert _exists(engine.docker, project.image, DOCKER_HOST=host)
        assert not _exists(engine.docker, project.image)
        assert "Accepted publickey for" in sshd.log.read_text()
        assert find_in_tree(data_root, key_needles(lab.deploy.private_bytes)) == []

        # Without paramiko (no [ssh] extra) the SDK cannot speak ssh://: clean
        # asks the docker CLI instead, and cleans the engine behind sshd.
        first = _image_id(engine.docker, project.image, DOCKER_HOST=host)
        (project.path / "app" / "changed.py").write_text("CHANGED = True\n")
        assert project.inv("build-image", env=env).returncode == 0  # first is dangling now
        blocker = tmp_path / "no-paramiko"
        (blocker / "paramiko").mkdir(parents=True)
        (blocker / "paramiko" / "__init__.py").write_text("raise ImportError('no paramiko')\n")
        no_sdk = {**env, "PYTHONPATH": str(blocker)}
        dry = project.inv("clean", "--dry-run", env=no_sdk)
        assert dry.returncode == 0, dry.stderr
        assert f"would remove dangling image {first}" in dry.stderr
        assert "BuildKit cache records of private steps" in dry.stderr
        done = project.inv("clean", env=no_sdk)
        assert done.returncode == 0, done.stderr
        assert not _exists(engine.docker, first, DOCKER_HOST=host)
        assert _exists(engine.docker, project.image, DOCKER_HOST=host)
        again = project.inv("clean", "--dry-run", env=no_sdk)
        assert "BuildKit cache records of private steps" not in again.stderr
    finally:
        sshd.stop()


def _image_id(docker: str, image: str, **env: str) -> str:
    return subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", image],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
