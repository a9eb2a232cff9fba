"""The leak checks can fail: an image built the old way is caught by each of them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.support.fixtures import Lab, Project
from tests.support.leaks import find_in_tree, image_leaks, key_needles
from tests.support.old_recipe import old_way_image
from tests.support.realparts import make_key

pytestmark = pytest.mark.engine


def test_old_recipe_is_caught(
    tmp_path: Path, engine: Engine, base_image: str, data_root: Path
) -> None:
    """Key as build arg, written in a stage: found in history, layers and data root."""
    key = make_key(tmp_path / "keys", "old-recipe-key")
    name = f"sbt-old-recipe-{os.getpid()}"
    with old_way_image(engine, base_image, key.private_bytes, tmp_path, name) as image:
        needles = key_needles(key.private_bytes)
        found = image_leaks(engine.docker, image, needles, base_image)
        assert "docker save" in found
        assert "docker history" in found
        assert "docker save (added layers)" in found  # the PEM header in the new layer
        assert find_in_tree(data_root, needles) != []


def test_audit_finds_the_old_recipe(
    tmp_path: Path, engine: Engine, base_image: str, project: Project
) -> None:
    """`inv audit` on an image built the old way: key block, key bytes, secret build arg."""
    key = make_key(tmp_path / "keys", "old-recipe-key")
    name = f"sbt-old-recipe-audit-{os.getpid()}"
    with old_way_image(engine, base_image, key.private_bytes, tmp_path, name) as image:
        done = project.inv(
            "audit",
            "--image",
            image,
            env={"SECUREBUILD_KEY_FILE": str(key.private), "SECUREBUILD_KEY_SOURCE": "file"},
        )
    assert done.returncode == 7, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"securebuild: error: audit of {image} found {len(done.stdout.splitlines())} problem(s),"
        " listed above: rebuild without the secret (build-image forwards keys instead of copying"
        " them), and rotate any key that was in the image"
    ]
    found = done.stdout
    assert "/root/.ssh/id_rsa: a private key block" in found
    assert "/root/.ssh/id_rsa: bytes of the configured private key" in found
    assert "build arg SSH_PRIVATE_KEY is named like a secret" in found
    needles = key_needles(key.private_bytes)
    assert not any(n.decode() in found + done.stderr for n in needles)  # reported, not echoed


def test_build_image_audit_passes_on_our_image(project: Project, lab: Lab, engine: Engine) -> None:
    """The audit (here asked for by the `audit` setting, as CI configs do; the
    --audit flag sets the same) finds nothing in an image this tool builds; and
    the private URLs, a build arg of the SSH step, are not in the image's history."""
    done = project.inv(
        "build-image",
        "--json",
        env={
            "SECUREBUILD_KEY_SOURCE": "file",
            "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
            "SECUREBUILD_AUDIT": "true",
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"audit of {project.image}: clean" in done.stderr
    assert json.loads(done.stdout)["audit"] == "clean"
    history = subprocess.run(
        [engine.docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}", project.image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "COPY . /app" in history  # the history was read
    assert "URL_REQUIREMENTS" not in history
    assert lab.private_url.split("://", 1)[1] not in history
