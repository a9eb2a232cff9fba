"""The base image a project builds on, read from its Dockerfile as BuildKit would."""

from __future__ import annotations

from pathlib import Path

import pytest

from securebuild_tasks.build import (
    base_image,
    dockerfile_base_image,
    template_path,
    wheel_base_image,
)
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ARG REGISTRY\nFROM ${REGISTRY:-docker.io}/library/python:3.12-slim\n",
            "docker.io/library/python:3.12-slim",
        ),
        ("ARG R\nFROM ${R-docker.io}/python:3.12\n", "docker.io/python:3.12"),
        ("ARG R=\nFROM ${R:-docker.io}/python:3.12\n", "docker.io/python:3.12"),
        ("FROM \\\n  python:3.11-slim \\\n  AS app\n", "python:3.11-slim"),
        ('FROM python:3.12-slim\nRUN <<EOF\nFROM users"\nEOF\n', "python:3.12-slim"),
        ("# FROM commented:out\nFROM python:3.13\n", "python:3.13"),
        ('ARG BAD="not an image"\nFROM $BAD\n', ""),
        ("ARG PY=3.11\nARG BASE_IMAGE=python:${PY}-slim\nFROM ${BASE_IMAGE}\n", "python:3.11-slim"),
        ("ARG A=python B=3.12\nFROM $A:$B\n", "python:3.12"),
        ("FROM \\\n# a comment\n\n  alpine:3.20\n", "alpine:3.20"),
        ("FROM python:3.12\nLABEL x='a<<b'\nFROM alpine:3.20\n", "alpine:3.20"),
    ],
)
def test_variables_continuations_and_heredocs(tmp_path: Path, text: str, expected: str) -> None:
    """${VAR:-default} and ${VAR-default}, continued lines, heredoc bodies and
    comments are read as BuildKit reads them; what is no image reference is none."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    assert dockerfile_base_image(dockerfile, {}) == expected


def test_lock_builds_on_a_projects_own_dockerfile_only_when_it_is_the_templates(
    tmp_path: Path,
) -> None:
    """lock and vendor run the template's stages (a shell, Python): they take the
    base of init's Dockerfile, but not the last stage of a Dockerfile of the
    user's own (a distroless one has neither), unless base_image says so."""
    (tmp_path / "Dockerfile").write_text(
        template_path().read_text().replace("python:3.12-slim", "python:3.11-slim")
    )
    assert wheel_base_image(Settings(), tmp_path, tmp_path) == "python:3.11-slim"
    (tmp_path / "Dockerfile").write_text("FROM python:3.12 AS b\nFROM gcr.io/distroless/python3\n")
    assert wheel_base_image(Settings(), tmp_path, tmp_path) == ""
    assert base_image(Settings(), tmp_path, tmp_path) == "gcr.io/distroless/python3"
    # init's Dockerfile with a final stage of the user's own: the wheel stages
    # still build on the template's base stage.
    (tmp_path / "Dockerfile").write_text(
        template_path().read_text().replace("python:3.12-slim", "python:3.11-slim")
        + "FROM gcr.io/distroless/python3-debian12 AS final\nCOPY --from=runtime /opt /opt\n"
    )
    assert wheel_base_image(Settings(), tmp_path, tmp_path) == "python:3.11-slim"
    chosen = Settings(base_image="python:3.13-slim")
    assert wheel_base_image(chosen, tmp_path, tmp_path) == "python:3.13-slim"


def test_a_base_image_setting_the_dockerfile_cannot_take_is_refused(tmp_path: Path) -> None:
    """base_image with a Dockerfile of the user's own that has no ARG BASE_IMAGE:
    the build would ignore it while lock and vendor resolve for it, so it is
    refused in one line; with the ARG it reaches the build."""
    from securebuild_tasks.build import plan_build
    from securebuild_tasks.errors import SettingsError

    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    (tmp_path / "Dockerfile").write_text("FROM python:3.12-slim\nRUN pip install six\n")
    settings = Settings(base_image="python:3.11-slim")
    with pytest.raises(SettingsError) as refused:
        plan_build(settings, tmp_path)
    assert refused.value.message == (
        f"base_image is set (python:3.11-slim), but {tmp_path / 'Dockerfile'} declares no"
        " ARG BASE_IMAGE, so the build would not use it"
    )
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n")
    assert plan_build(settings, tmp_path).build_args["BASE_IMAGE"] == "python:3.11-slim"
