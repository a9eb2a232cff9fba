"""Builds through the docker buildx plugin (its `docker` driver) on the real engine.

The rest of the suite builds with the classic client; here the same client
gets the buildx plugin through DOCKER_CONFIG, so the tool takes its buildx
path: `docker buildx build --load`, `--allow network.host`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.integration.test_build_image import _assert_one_line_error, _import_private
from tests.support.fixtures import BASE_IMAGE, Lab, Project, securebuild_leftovers
from tests.support.leaks import image_leaks, key_needles

pytestmark = pytest.mark.engine


def _buildx_env(buildx_config: Path, lab: Lab, **settings: str) -> dict[str, str]:
    """The client with the buildx plugin, the deploy key from its file, and ``settings``."""
    return {
        "DOCKER_CONFIG": str(buildx_config),
        "SECUREBUILD_KEY_SOURCE": "file",
        "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
        **{f"SECUREBUILD_{name.upper()}": value for name, value in settings.items()},
    }


def test_build_through_buildx_leaks_nothing(
    project: Project, lab: Lab, engine: Engine, buildx_config: Path
) -> None:
    """With buildx the build runs as `docker buildx build`, loads the image into
    the engine, and the key is in no layer, history, config or output."""
    done = project.inv("build-image", "--json", env=_buildx_env(buildx_config, lab))
    assert done.returncode == 0, done.stderr[-3000:]
    assert " with buildx (" in done.stderr
    assert 'building with "default" instance using docker driver' in done.stderr
    assert json.loads(done.stdout)["image"] == project.image
    assert _import_private(engine, project.image) == "1.0.0"
    needles = key_needles(lab.deploy.private.read_bytes())
    assert image_leaks(engine.docker, project.image, needles, BASE_IMAGE) == {}
    assert not [n for n in needles if n in (done.stdout + done.stderr).encode()]
    assert securebuild_leftovers() == []


def test_buildx_builder_names_are_checked(
    project: Project, lab: Lab, engine: Engine, buildx_config: Path
) -> None:
    """A builder that does not exist, and a docker context's own builder (which
    buildx selects by context), each end in one line saying what to do."""
    env = _buildx_env(buildx_config, lab, buildx_builder="sbt-no-such-builder")
    missing = project.inv("build-image", env=env)
    _assert_one_line_error(missing, 2, "no buildx builder named sbt-no-such-builder")

    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    subprocess.run(
        [engine.docker, "context", "create", "sbt-buildx-ctx", "--docker", f"host={host}"],
        env={**os.environ, "DOCKER_CONFIG": str(buildx_config)},
        capture_output=True,
        check=False,  # already there from an earlier run of the session: fine
    )
    by_context = project.inv(
        "build-image", env={**env, "SECUREBUILD_BUILDX_BUILDER": "sbt-buildx-ctx"}
    )
    _assert_one_line_error(by_context, 2, "DOCKER_CONTEXT=sbt-buildx-ctx")
    assert securebuild_leftovers() == []


def test_cache_export_refused_by_the_docker_driver_is_one_line(
    project: Project, lab: Lab, buildx_config: Path
) -> None:
    """buildx's `docker` driver on an engine without the containerd image store
    cannot export a cache: the build stops in one line saying what would, and no
    cache directory is left half-written."""
    ignore = project.path / ".dockerignore"
    ignore.write_text(ignore.read_text() + ".buildcache\n")
    env = _buildx_env(buildx_config, lab, cache_to="type=local,dest=.buildcache,mode=max")
    refused = project.inv("build-image", env=env)
    _assert_one_line_error(refused, 2, "cannot export a build cache (setting cache_to)")
    assert not any((project.path / ".buildcache").glob("*"))
    assert securebuild_leftovers() == []
