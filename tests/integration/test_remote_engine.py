"""Builds on an engine other than the default one: DOCKER_HOST and a docker context.

A second, real dockerd on a socket of its own stands in for a remote builder.
The agent socket is forwarded by the client, so the key never travels to the
other engine's storage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.conftest import need
from tests.support.fixtures import Lab, Project
from tests.support.leaks import find_in_tree, key_needles

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def second_engine(engine: Engine, base_image: str) -> Iterator[tuple[str, Path]]:
    """A second dockerd (own socket, data root and exec root) with the base image loaded."""
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    need(os.geteuid() == 0 and Path(dockerd).exists(), "a second dockerd needs root and dockerd")
    root = Path("/tmp") / f"sbt-dockerd-{os.getpid()}"  # short: socket paths are limited
    root.mkdir(exist_ok=True)
    host = f"unix://{root}/docker.sock"
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            dockerd,
            "--host",
            host,
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--pidfile",
            str(root / "docker.pid"),
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        env = {**os.environ, "DOCKER_HOST": host}
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [engine.docker, "info"], env=env, capture_output=True, check=False
            ).returncode
            != 0
        ):
            assert process.poll() is None, (root / "dockerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the second dockerd did not start"
            time.sleep(0.5)
        saved = subprocess.Popen([engine.docker, "save", base_image], stdout=subprocess.PIPE)
        subprocess.run(
            [engine.docker, "load"], stdin=saved.stdout, env=env, capture_output=True, check=True
        )
        saved.wait()
        yield host, root / "data"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "-R", str(root / "exec")], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


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
