"""`inv clean` removes what this tool made and nothing else."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import docker
import pytest

from securebuild_tasks.clean import PRIVATE_STEP_MARK
from securebuild_tasks.engine import Engine
from tests.integration.test_build_image import _assert_one_line_error
from tests.support.fixtures import Lab, ModernEngine, Project

pytestmark = pytest.mark.engine


def _records(naming: str, host: str | None = None) -> list[str]:
    """Ids of the engine's BuildKit cache records whose description names ``naming``."""
    client = docker.DockerClient(base_url=host) if host else docker.from_env()
    try:
        records = client.df().get("BuildCache") or []
    finally:
        client.close()
    return [r["ID"] for r in records if naming in r.get("Description", "")]


def _private_records() -> list[str]:
    # The runtime stage's install step keeps its temporary files in a cache
    # mount (a private sdist from the index is unpacked and built there); the
    # step is not marked, since its result is the image's own layer.
    return _records(PRIVATE_STEP_MARK) + _records("cached mount /tmp/securebuild/work ")


def _image_exists(engine: Engine, ref: str) -> bool:
    done = subprocess.run(
        [engine.docker, "image", "inspect", ref], capture_output=True, check=False
    )
    return done.returncode == 0


def test_clean_removes_only_its_own(
    project: Project, lab: Lab, engine: Engine, base_image: str
) -> None:
    """Wheelhouse, dangling project images, private cache and stale dirs go; the rest stays."""
    env = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}
    assert project.inv("build-image", env=env).returncode == 0
    first_id = subprocess.run(
        [engine.docker, "image", "inspect", "--format", "{{.Id}}", project.image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A stopped container of the first image: clean keeps that image and goes on.
    user = f"sbt-user-{os.getpid()}"
    subprocess.run(
        [engine.docker, "create", "--name", user, first_id], check=True, capture_output=True
    )
    (project.path / "app" / "changed.py").write_text("CHANGED = True\n")
    assert project.inv("build-image", env=env).returncode == 0  # the first image is dangling now
    assert project.inv("vendor", env=env).returncode == 0
    wheelhouse = project.path / "vendor" / "python"
    assert (wheelhouse / "manifest.json").is_file()

    # Things that are not the tool's: a user's file, a user's folder, another image.
    (project.path / "notes.txt").write_text("mine\n")
    (project.path / "vendor" / "js").mkdir()
    (project.path / "vendor" / "js" / "lib.js").write_text("//\n")
    other = f"sbt-not-ours-{os.getpid()}:keep"
    subprocess.run([engine.docker, "tag", base_image, other], check=True)
    stale = Path(tempfile.mkdtemp(prefix="securebuild-"))
    (stale / "owner").write_text("999999999\n")  # no such process: a killed run
    assert _records(PRIVATE_STEP_MARK) != []
    assert _records("cached mount /tmp/securebuild/work ") != []
    public_caches = _records("cached mount /var/lib/apt/lists ")
    assert public_caches != []

    dry = project.inv("clean", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove wheelhouse" in dry.stderr
    assert first_id in dry.stderr
    assert "BuildKit cache records of private steps" in dry.stderr
    assert str(stale) in dry.stderr
    assert wheelhouse.exists()
    assert stale.exists()
    assert _image_exists(engine, first_id)

    done = project.inv("clean")
    try:
        assert done.returncode == 0, done.stderr
        assert not wheelhouse.exists()
        assert not stale.exists()
        assert _image_exists(engine, first_id)
        assert f"kept dangling image {first_id}" in done.stderr
        assert _private_records() == []
        assert _records("cached mount /var/lib/apt/lists ") == public_caches
        assert (project.path / "notes.txt").read_text() == "mine\n"
        assert (project.path / "vendor" / "js" / "lib.js").exists()
        assert (project.path / "requirements.txt").exists()
        assert _image_exists(engine, project.image)
        assert _image_exists(engine, other)
        assert _image_exists(engine, base_image)

        subprocess.run([engine.docker, "rm", user], check=True, capture_output=True)
        freed = project.inv("clean")
        assert freed.returncode == 0, freed.stderr
        assert not _image_exists(engine, first_id)

        again = project.inv("clean")
        assert again.returncode == 0
        assert "nothing to clean" in again.stderr

        # A named buildx builder keeps its own cache: clean says how to empty it.
        named = project.inv("clean", env={"SECUREBUILD_BUILDX_BUILDER": "sbt-shared"})
        assert named.returncode == 0, named.stderr
        assert "`docker buildx prune --builder sbt-shared --all`" in named.stderr
    finally:
        subprocess.run([engine.docker, "rm", user], capture_output=True, check=False)
        subprocess.run([engine.docker, "image", "rm", other], capture_output=True, check=False)


def test_clean_without_daemon_removes_nothing(project: Project, lab: Lab) -> None:
    """With no daemon, clean says so in one line and leaves the wheelhouse alone."""
    wheelhouse = project.path / "vendor" / "python"
    wheelhouse.mkdir(parents=True)
    (wheelhouse / "manifest.json").write_text('{"generator": "securebuild-tasks", "wheels": []}\n')
    done = project.inv("clean", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    _assert_one_line_error(done, 5, "cannot reach the Docker daemon")
    assert (wheelhouse / "manifest.json").exists()
    local = project.inv("clean", "--local-only", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert local.returncode == 0, local.stderr
    assert not wheelhouse.exists()


def test_clean_on_the_containerd_engine(
    project: Project, lab: Lab, modern_engine: ModernEngine
) -> None:
    """On Docker 28 (API 1.42 and later list a record's parents differently), the
    private steps' records go, with every record built on them."""
    host = modern_engine.env["DOCKER_HOST"]
    env = {
        **modern_engine.env,
        "SECUREBUILD_KEY_SOURCE": "file",
        "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
    }
    built = project.inv("build-image", env=env)
    assert built.returncode == 0, built.stderr[-3000:]
    assert _records(PRIVATE_STEP_MARK, host) != []
    try:
        done = project.inv("clean", env=modern_engine.env)
        assert done.returncode == 0, done.stderr
        assert "BuildKit cache records of private steps" in done.stderr
        assert _records(PRIVATE_STEP_MARK, host) == []
        assert _records("cached mount /tmp/securebuild/", host) == []
        again = project.inv("clean", env=modern_engine.env)
        assert again.returncode == 0, again.stderr
        assert "BuildKit cache records" not in again.stderr
    finally:
        modern_engine.run("image", "rm", "-f", project.image, check=False)
