"""The files the template copies in must reach the build context: an ignore file
that leaves one out is refused before the build, in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from docker.utils.build import PatternMatcher
from hypothesis import given, settings
from hypothesis import strategies as st

from securebuild_tasks.build import _ignored, _refuse_ignored_inputs, plan_build, plan_lock
from securebuild_tasks.errors import SettingsError
from securebuild_tasks.scaffold import DOCKERIGNORE_ENTRIES
from securebuild_tasks.settings import Settings

PATTERNS = [
    [],
    ["*", "!app"],
    ["*", "!app", "!requirements.txt"],
    list(DOCKERIGNORE_ENTRIES),
    ["requirements.txt"],
    ["**/requirements.txt"],
    ["req*"],
    ["*.txt", "!requirements.txt"],
    ["vendor"],
    ["vendor/", "!vendor/python"],
    ["[rq]equirements.txt"],
    ["[!a]equirements.txt"],
    ["sub/*"],
    ["/requirements.txt"],
    ["./requirements.txt"],
    ["!requirements.txt", "requirements.txt"],
    ["requirements.txt", "!requirements.txt"],
    ["**"],
    ["."],
    ["requirements\\.txt"],
    [".env", "![].]env"],  # "]" first in a class is a "]": the exception takes .env back
    ["../**/"],
    ["*.ENV"],
]
PATHS = [
    "requirements.txt",
    "requirements.lock",
    "vendor/python/requirements.hashes",
    "sub/requirements.txt",
    ".env",
    ".env.example",
    "app/x.py",
]
IGNORE = Path(".dockerignore")


@pytest.mark.parametrize("patterns", PATTERNS)
def test_what_is_ignored_is_what_docker_ignores(patterns: list[str]) -> None:
    """Every answer, taken with or without the SDK's matcher, is the SDK's answer."""
    for path in PATHS:
        expected = bool(PatternMatcher(patterns).matches(path)) if patterns else False  # type: ignore[arg-type]
        assert _ignored(patterns, path, IGNORE) == expected, (patterns, path)


ATOMS = ["*", "**", "?", "[a-z]", "[]]", "[!.]e", "!", ".env", "env", ".", "/", "requirements"]
ATOMS += ["txt", ".txt", "vendor", "python", "x", "\\.", "..", "app", "*/", "**/", "ENV"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.lists(st.sampled_from(ATOMS), min_size=1, max_size=4)),
        min_size=1,
        max_size=3,
    )
)
def test_any_ignore_file_is_read_as_docker_reads_it(
    drawn: list[tuple[bool, list[str]]],
) -> None:
    """Patterns made of wildcards, classes, escapes, exceptions and dots: the quick
    answers never differ from the SDK's."""
    patterns = [("!" if negated else "") + "".join(atoms) for negated, atoms in drawn]
    for path in [*PATHS, ".ENV", "Requirements.TXT"]:
        try:
            expected = bool(PatternMatcher(patterns).matches(path))  # type: ignore[arg-type]
        except re.error:
            continue  # a pattern Docker cannot read: refused, see below
        assert _ignored(patterns, path, IGNORE) == expected, (patterns, path)


def test_a_pattern_docker_cannot_read_is_one_line(tmp_path: Path) -> None:
    project = _project(tmp_path, "[z-a]*\n!requirements.txt\n")
    with pytest.raises(SettingsError) as refused:
        plan_build(Settings(), project)
    assert refused.value.line().startswith(
        f"{project / '.dockerignore'} has a pattern Docker cannot read (bad character range"
    )


def test_plain_names_are_answered_without_the_docker_sdk() -> None:
    """The `.dockerignore` `inv init` writes, and one of plain names, are read
    without importing the docker SDK (longer than a cached rebuild)."""
    script = (
        "import sys\n"
        "from securebuild_tasks.build import _ignored\n"
        f"patterns = {list(DOCKERIGNORE_ENTRIES)!r}\n"
        "from pathlib import Path\n"
        "i = Path('.dockerignore')\n"
        "assert not _ignored(patterns, 'requirements.txt', i)\n"
        "assert _ignored(patterns, '.env', i) and _ignored(patterns, '.git/config', i)\n"
        "assert _ignored(['build/', 'known_hosts'], 'build/requirements.txt', i)\n"
        "print('docker' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def _project(tmp_path: Path, ignore: str) -> Path:
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    (tmp_path / "app").mkdir()
    (tmp_path / ".dockerignore").write_text(ignore)
    return tmp_path


def test_an_allow_list_that_leaves_out_the_requirements_is_refused(tmp_path: Path) -> None:
    """`*` then `!app`, a common allow-list, left BuildKit to say only
    `"/requirements.txt" not found`; said before the build, with the line to add."""
    project = _project(tmp_path, "*\n!app\n")
    with pytest.raises(SettingsError) as refused:
        plan_build(Settings(), project)
    assert refused.value.line() == (
        ".dockerignore leaves requirements.txt out of the build context, and the build"
        f" copies it in: add `!requirements.txt` to {project / '.dockerignore'}"
    )
    (project / ".dockerignore").write_text("*\n!app\n!requirements.txt\n")
    assert plan_build(Settings(), project).build_args["REQUIREMENTS"] == "requirements.txt"


def test_a_dockerfile_of_the_users_own_copies_what_it_likes(tmp_path: Path) -> None:
    """A Dockerfile that takes no REQUIREMENTS arg is not held to the template's copies."""
    project = _project(tmp_path, "*\n!app\n")
    (project / "Dockerfile").write_text("FROM python:3.12-slim\nCOPY app /app\n")
    assert plan_build(Settings(), project) is not None


def test_the_lock_input_must_reach_the_lock_build(tmp_path: Path) -> None:
    project = _project(tmp_path, "*.in\n")
    (project / "requirements.in").write_text("six\n")
    with pytest.raises(SettingsError, match=r"leaves requirements\.in out of the build context"):
        plan_lock(Settings(), project, tmp_path / "out")


def test_a_vendored_wheelhouse_must_reach_the_build(tmp_path: Path) -> None:
    """The wheelhouse's hashes file stands for the folder the template copies."""
    (tmp_path / ".dockerignore").write_text("vendor\n")
    args = {"WHEEL_SOURCE": "vendored", "WHEELHOUSE": "vendor/python"}
    with pytest.raises(SettingsError, match=r"leaves vendor/python/requirements\.hashes out"):
        _refuse_ignored_inputs(tmp_path, tmp_path / "Dockerfile", args, "WHEELHOUSE")
    (tmp_path / ".dockerignore").write_text("vendor/*.tmp\n")
    _refuse_ignored_inputs(tmp_path, tmp_path / "Dockerfile", args, "WHEELHOUSE")


def test_a_pattern_the_sdk_warns_about_warns_no_user(tmp_path: Path) -> None:
    """docker-py's regex of "[[:alpha:]]" draws a FutureWarning from re; the user
    reads only what the tool says."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ignored(["[[:alpha:]]*", "!x"], "requirements.txt", IGNORE)
    assert [w for w in caught if issubclass(w.category, FutureWarning)] == []
