"""The leak checks can fail: an image built the old way is caught by each of them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.support.leaks import find_in_tree, image_leaks, key_needles
from tests.support.realparts import make_key

pytestmark = pytest.mark.engine

OLD_RECIPE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS intermediate
ARG SSH_PRIVATE_KEY
RUN mkdir -p /root/.ssh && echo "${SSH_PRIVATE_KEY}" > /root/.ssh/id_rsa
"""


def test_old_recipe_is_caught(
    tmp_path: Path, engine: Engine, base_image: str, data_root: Path
) -> None:
    """Key as build arg, written in a stage: found in history, layers and data root."""
    key = make_key(tmp_path / "keys", "old-recipe-key")
    (tmp_path / "Dockerfile").write_text(OLD_RECIPE)
    image = f"sbt-old-recipe-{os.getpid()}"
    # The old recipe on purpose: the key in argv and a build arg, classic builder.
    subprocess.run(
        [
            engine.docker,
            "build",
            "--network",
            "host",
            "-t",
            image,
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            "--build-arg",
            f"SSH_PRIVATE_KEY={key.private_bytes.decode()}",
            str(tmp_path),
        ],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        check=True,
    )
    try:
        needles = key_needles(key.private_bytes)
        found = image_leaks(engine.docker, image, needles, base_image)
        assert "docker save" in found
        assert "docker history" in found
        assert "docker save (added layers)" in found  # the PEM header in the new layer
        assert find_in_tree(data_root, needles) != []
    finally:
        subprocess.run(
            [engine.docker, "image", "rm", "-f", image], capture_output=True, check=False
        )
