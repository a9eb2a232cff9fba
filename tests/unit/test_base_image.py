"""The base image a project builds on, read from its Dockerfile as BuildKit would."""

from __future__ import annotations

from pathlib import Path

import pytest

from securebuild_tasks.build import base_image, dockerfile_base_image, template_path
from securebuild_tasks.settings import Settings

MULTI_STAGE = """\
# syntax is not needed
ARG PY=3.11
ARG REGISTRY="registry.example:5000"
FROM --platform=$BUILDPLATFORM node:20 AS web
RUN build
from ${REGISTRY}/python:${PY}-slim as Build
ARG LATE=ignored
FROM build AS final
COPY --from=web /dist /app
"""


@pytest.mark.parametrize(
    ("args", "target", "expected"),
    [
        ({}, "", "registry.example:5000/python:3.11-slim"),  # final -> Build (any case)
        ({"PY": "3.13"}, "", "registry.example:5000/python:3.13-slim"),  # a build arg
        ({}, "web", "node:20"),
        ({}, "nosuchstage", ""),
    ],
)
def test_stages_and_global_args_are_followed(
    tmp_path: Path, args: dict[str, str], target: str, expected: str
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(MULTI_STAGE)
    assert dockerfile_base_image(dockerfile, args, target) == expected


def test_scratch_a_loop_and_a_latin1_comment(tmp_path: Path) -> None:
    """scratch and names that only point at each other are no image; bytes that
    are not UTF-8 do not stop the reading."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_bytes(b"# caf\xe9\nFROM scratch\n")
    assert dockerfile_base_image(dockerfile, {}) == ""
    dockerfile.write_text("FROM b AS a\nFROM a AS b\n")
    assert dockerfile_base_image(dockerfile, {}) == ""


def test_the_template_the_setting_and_init(tmp_path: Path) -> None:
    """The built-in template's runtime starts from its ARG BASE_IMAGE; the setting
    replaces it; a context Dockerfile (init's) is read in its place."""
    assert dockerfile_base_image(template_path(), {}) == "python:3.12-slim"
    assert base_image(Settings(), tmp_path, tmp_path) == "python:3.12-slim"
    assert base_image(Settings(base_image="python:3.13"), tmp_path, tmp_path) == "python:3.13"
    (tmp_path / "Dockerfile").write_text(
        template_path().read_text().replace("python:3.12-slim", "python:3.11-slim")
    )
    assert base_image(Settings(), tmp_path, tmp_path) == "python:3.11-slim"
