"""Property 7: two builds at once, with two keys, each see only their own key.

Two git servers, each authorizing one of two keys; two projects, each needing
a package from one server; two `inv build-image` runs started together, one
with the key in the user's ssh-agent, the other with the key from the keyring
(through its own ephemeral agent). Each project's Dockerfile (its own, still
built by the tool) records in the image what its private step's forwarded
agent offers (`ssh-add -L`) and when the step ran, so the test can check
that the steps really overlapped and that each saw exactly its own public key.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.support.cli import user_env
from tests.support.fixtures import USER_TASKS, Lab, Project, in_image, securebuild_leftovers
from tests.support.leaks import HEADER, find_in_bytes, image_leaks, key_needles
from tests.support.realparts import Agent, GitServer, SSHKey, make_key

pytestmark = pytest.mark.engine

# A project's own Dockerfile: the private step writes down which keys the
# forwarded agent offers, sleeps so the two builds' steps overlap, then installs.
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG REQUIREMENTS=requirements.txt
COPY ${REQUIREMENTS} /tmp/requirements.txt
ENV GIT_SSH_COMMAND="ssh -o StrictHostKeyChecking=yes \
-o UserKnownHostsFile=/run/secrets/known_hosts -o GlobalKnownHostsFile=/dev/null -o BatchMode=yes"
RUN --mount=type=ssh,required=true \\
    --mount=type=secret,id=known_hosts,required=true \\
    --mount=type=secret,id=pip_config \\
    set -eu; date +%s.%N > /step-start; \\
    ssh-add -L > /seen-keys.txt; \\
    sleep 8; \\
    PIP_CONFIG_FILE=/run/secrets/pip_config pip install --no-cache-dir -r /tmp/requirements.txt; \\
    date +%s.%N > /step-end
"""


@pytest.fixture
def servers(tmp_path: Path, lab: Lab) -> Iterator[tuple[GitServer, GitServer]]:
    """Two git servers (sshd on 127.0.0.1), so each key can be authorized for one only."""
    started: list[GitServer] = []
    try:
        for name in ("a", "b"):
            started.append(GitServer(tmp_path / f"git-{name}").start())
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def _project(
    root: Path, lab: Lab, server: GitServer, package: str, base_image: str, engine: Engine
) -> Project:
    """A project with its own Dockerfile that needs ``package`` from ``server``."""
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "known_hosts").write_text(server.known_hosts_line())
    (root / "pip.conf").write_text(lab.index.pip_config())
    (root / "tasks.py").write_text(USER_TASKS)
    (root / ".dockerignore").write_text("known_hosts\npip.conf\n.env\n")
    url = server.create_package(package, "v1.0.0", "1.0.0")
    (root / "requirements.txt").write_text(f"{package} @ git+{url}@v1.0.0\n")
    image = f"sbt-{uuid.uuid4().hex[:10]}"
    env = user_env(
        SECUREBUILD_IMAGE=image,
        SECUREBUILD_KNOWN_HOSTS=str(root / "known_hosts"),
        SECUREBUILD_PIP_CONFIG=str(root / "pip.conf"),
        SECUREBUILD_NETWORK="host",
        SECUREBUILD_BASE_IMAGE=base_image,
        SECUREBUILD_KEYRING_SERVICE=lab.keyring_service,
        SECUREBUILD_DOCKER=engine.docker,
    )
    return Project(root, env, f"{image}:latest")


def _public_bodies(text: str) -> list[str]:
    """The base64 bodies of the public keys in ``ssh-add -L`` output."""
    return [line.split()[1] for line in text.splitlines() if line.strip()]


def _body(key: SSHKey) -> str:
    return key.public_line.split()[1]


def test_concurrent_builds_each_see_only_their_own_key(
    tmp_path: Path,
    lab: Lab,
    agent: Agent,
    engine: Engine,
    base_image: str,
    keyring_ready: None,
    servers: tuple[GitServer, GitServer],
) -> None:
    """Both succeed; image A records only public key A, image B only public key B."""
    server_a, server_b = servers
    key_a = make_key(tmp_path / "keys", "p7-key-a")
    key_b = make_key(tmp_path / "keys", "p7-key-b")
    server_a.authorize(key_a)
    server_b.authorize(key_b)
    a = _project(tmp_path / "project-a", lab, server_a, "alphapkg", base_image, engine)
    b = _project(tmp_path / "project-b", lab, server_b, "betapkg", base_image, engine)
    agent.add(key_a)  # the user's agent holds key A only
    stored = b.inv("store-key", "--key-file", str(key_b.private))
    assert stored.returncode == 0, stored.stderr
    run_a = run_b = None
    try:
        run_a = a.start(
            "build-image",
            env={"SSH_AUTH_SOCK": str(agent.socket), "SECUREBUILD_KEY_SOURCE": "agent"},
        )
        run_b = b.start("build-image", env={"SECUREBUILD_KEY_SOURCE": "keyring"})
        with ThreadPoolExecutor(2) as pool:  # drain both pipes at once: neither build stalls
            outputs = list(pool.map(lambda run: run.communicate(timeout=600)[0], (run_a, run_b)))
        forgot = b.inv("forget-key")
        assert forgot.returncode == 0, forgot.stderr

        assert run_a.returncode == 0, outputs[0][-3000:].decode(errors="replace")
        assert run_b.returncode == 0, outputs[1][-3000:].decode(errors="replace")
        assert f"key {key_a.fingerprint} from agent".encode() in outputs[0]
        assert f"key {key_b.fingerprint} from keyring".encode() in outputs[1]

        # Each private step saw exactly its own key: public key A in A, B in B.
        seen_a = in_image(engine.docker, a.image, "cat", "/seen-keys.txt")
        seen_b = in_image(engine.docker, b.image, "cat", "/seen-keys.txt")
        assert _public_bodies(seen_a) == [_body(key_a)]
        assert _public_bodies(seen_b) == [_body(key_b)]
        assert in_image(engine.docker, a.image, "python", "-c", "import alphapkg") == ""
        assert in_image(engine.docker, b.image, "python", "-c", "import betapkg") == ""

        # The steps ran at the same time (each started before the other ended).
        start_a, end_a, start_b, end_b = (
            float(in_image(engine.docker, image, "cat", path))
            for image in (a.image, b.image)
            for path in ("/step-start", "/step-end")
        )
        assert start_a < end_b
        assert start_b < end_a

        # Neither image nor either build's output holds either private key.
        needles = key_needles(key_a.private_bytes) + key_needles(key_b.private_bytes)
        for image in (a.image, b.image):
            assert image_leaks(engine.docker, image, needles, base_image) == {}, image
        for output in (*outputs, stored.stdout.encode(), stored.stderr.encode()):
            assert find_in_bytes(output, needles) == []
            assert not HEADER.search(output)
        assert securebuild_leftovers() == []
    finally:
        for run in (run_a, run_b):
            if run is not None and run.poll() is None:
                run.kill()
                run.wait()
        b.inv("forget-key")
        for project in (a, b):
            subprocess.run(
                [engine.docker, "image", "rm", "-f", project.image],
                capture_output=True,
                check=False,
            )
