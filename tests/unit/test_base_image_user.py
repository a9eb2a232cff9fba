"""BASE_IMAGE_USER: the user a base image runs as, read from the engine (pulled
first when the engine lacks the image), given to the template's runtime stage."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from securebuild_tasks.build import BuildPlan, _with_base_image_user, template_path
from securebuild_tasks.engine import Engine
from securebuild_tasks.errors import EngineError, SettingsError
from securebuild_tasks.requirements import parse_requirements
from securebuild_tasks.settings import Settings
from tests.support.cli import stand_in_docker

# A client that knows one image (its user in $USER_OF_IMAGE), pulls another
# (after which it knows it too) and refuses everything else; it logs each call.
DOCKER = """\
#!/bin/sh
echo "$*" >> "$LOG"
case "$1 $2" in
  "image inspect")
    if [ "$3" = team/app-base:1 ] || [ -e "$PULLED" ]; then
      printf '[{"Id": "sha256:1", "Config": {"User": "%s"}}]' "$USER_OF_IMAGE"; exit 0
    fi
    echo "Error: No such image: $3" >&2; exit 1 ;;
esac
if [ "$1" = pull ]; then
  for last; do :; done
  if [ "$last" = team/remote-base:2 ]; then touch "$PULLED"; echo "$last"; exit 0; fi
  if [ "$last" = team/arm-only:4 ]; then
    if [ "$3" = --platform ]; then touch "$PULLED"; echo "$last"; exit 0; fi
    echo "no matching manifest for linux/amd64 in the manifest list entries" >&2; exit 1
  fi
  echo "Error response from daemon: pull access denied for $last" >&2; exit 1
fi
exit 1
"""


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # no socket: the client answers
    monkeypatch.setenv("LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("PULLED", str(tmp_path / "pulled"))
    monkeypatch.setenv("USER_OF_IMAGE", "app")
    return stand_in_docker(tmp_path, DOCKER)


def _plan(tmp_path: Path, dockerfile: Path, platform: str = "", **build_args: str) -> BuildPlan:
    requirements = parse_requirements("six\n", tmp_path / "requirements.txt")
    settings = Settings(build_args=build_args, platform=platform)
    args = {"BASE_IMAGE_USER": "", **build_args}
    return BuildPlan(settings, tmp_path, dockerfile, requirements, args, {})


def _filled(plan: BuildPlan, docker: Path) -> dict[str, str]:
    engine = Engine(str(docker), "classic", "20.10.24")
    return _with_base_image_user(plan, engine, io.StringIO()).build_args


def test_the_base_images_user_is_read_from_the_engine(tmp_path: Path, docker: Path) -> None:
    plan = _plan(tmp_path, template_path(), BASE_IMAGE="team/app-base:1")
    assert _filled(plan, docker)["BASE_IMAGE_USER"] == "app"
    assert "pull" not in (tmp_path / "calls.log").read_text()


def test_a_base_image_the_engine_lacks_is_pulled_first(tmp_path: Path, docker: Path) -> None:
    """For this machine's platform, even when the build targets another: a pull for
    another would retag the engine's local image to it."""
    plan = _plan(tmp_path, template_path(), "linux/arm64", BASE_IMAGE="team/remote-base:2")
    assert _filled(plan, docker)["BASE_IMAGE_USER"] == "app"
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [call for call in calls if call.startswith("pull")] == [
        "pull --quiet team/remote-base:2"
    ]


def test_a_base_image_that_cannot_be_pulled_is_named(tmp_path: Path, docker: Path) -> None:
    plan = _plan(tmp_path, template_path(), BASE_IMAGE="team/private-base:3")
    with pytest.raises(EngineError) as raised:
        _filled(plan, docker)
    assert raised.value.message == (
        "cannot pull the base image team/private-base:3"
        " (pull access denied for team/private-base:3)"
    )


def test_a_user_the_build_args_give_is_kept(tmp_path: Path, docker: Path) -> None:
    """BASE_IMAGE_USER in build_args wins; the engine is not asked."""
    plan = _plan(tmp_path, template_path(), BASE_IMAGE="team/app-base:1", BASE_IMAGE_USER="svc")
    assert _filled(plan, docker)["BASE_IMAGE_USER"] == "svc"
    assert not (tmp_path / "calls.log").exists()


def test_a_base_that_cannot_be_told_is_refused_not_run_as_root(
    tmp_path: Path, docker: Path
) -> None:
    """The template's base stage from a reference the tool cannot read: refused
    (the image would run as root whatever user its base has); a Dockerfile of
    the user's own without a `base` stage keeps its own default."""
    plan = _plan(tmp_path, template_path(), BASE_IMAGE="[::1]:5000/py:3")
    with pytest.raises(SettingsError, match="cannot tell which image the `base` stage"):
        _filled(plan, docker)
    own = tmp_path / "Dockerfile"
    own.write_text("FROM team/app-base:1\nARG BASE_IMAGE_USER=svc\nUSER ${BASE_IMAGE_USER}\n")
    assert "BASE_IMAGE_USER" not in _filled(_plan(tmp_path, own), docker)


def test_an_image_only_the_target_platform_has_is_pulled_for_it(
    tmp_path: Path, docker: Path
) -> None:
    """A base image published for the build's platform alone (none for this
    machine's) is pulled for that platform."""
    plan = _plan(tmp_path, template_path(), "linux/arm64", BASE_IMAGE="team/arm-only:4")
    assert _filled(plan, docker)["BASE_IMAGE_USER"] == "app"
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [call for call in calls if call.startswith("pull")] == [
        "pull --quiet team/arm-only:4",
        "pull --quiet --platform linux/arm64 team/arm-only:4",
    ]


def _plain(plan: BuildPlan) -> BuildPlan:
    """``plan`` as plan_build makes it for a context without a wheelhouse."""
    return dataclasses.replace(plan, build_args={"APP_SOURCE": "app-plain", **plan.build_args})


@pytest.mark.parametrize(
    ("user", "source"),
    [
        ("app", "app-pruned"),
        ("4321:0", "app-pruned"),
        ("", "app-plain"),
        ("0", "app-plain"),
        ("root", "app-plain"),
        ("0:1000", "app-plain"),
    ],
)
def test_an_image_that_runs_as_another_user_gets_its_app_readable(
    tmp_path: Path, docker: Path, monkeypatch: pytest.MonkeyPatch, user: str, source: str
) -> None:
    """A user other than root reads the root-owned app only if it is readable by
    all: its image takes the app through the stage that makes it so; root's
    keeps the one-copy stage."""
    monkeypatch.setenv("USER_OF_IMAGE", user)
    plan = _plain(_plan(tmp_path, template_path(), BASE_IMAGE="team/app-base:1"))
    assert _filled(plan, docker)["APP_SOURCE"] == source


def test_the_app_source_follows_a_user_the_build_args_give_unless_they_give_it_too(
    tmp_path: Path, docker: Path
) -> None:
    given = _plain(_plan(tmp_path, template_path(), BASE_IMAGE_USER="svc"))
    assert _filled(given, docker)["APP_SOURCE"] == "app-pruned"
    own = _plan(tmp_path, template_path(), BASE_IMAGE_USER="svc", APP_SOURCE="app-plain")
    assert _filled(own, docker)["APP_SOURCE"] == "app-plain"
