"""Property 9: hostile input is taken literally or refused in one line; it never
reaches a shell.

Hypothesis drives settings resolution with arbitrary text for every setting
from flags, the environment and a real ``.env`` file; malformed config files
and ``.env`` go through the real CLI; and a project whose path and requirement
lines are full of shell syntax is built, after which no file named by the
injections exists on the host or in the image.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from securebuild_tasks.engine import Engine
from securebuild_tasks.errors import SettingsError
from securebuild_tasks.settings import HELP, PATH_SETTINGS, Settings, resolve
from tests.cli.test_bad_input import one_line_error
from tests.integration.test_build_image import _import_private
from tests.support.cli import run_cli, user_env
from tests.support.fixtures import Lab, Project, in_image, securebuild_leftovers

#: Settings taken as text with no check of their own: what goes in must come out
#: (the paths among them made absolute).
LITERAL = (*PATH_SETTINGS, "agent_key")
INJECTIONS = (
    "$(touch pwned)",
    "${HOME}",
    "$HOME",
    "`touch pwned`",
    "a; touch pwned",
    "a && touch pwned",
    "it's",
    'say "hi"',
    "two\nlines",
    "crlf\r\nline",
    "back\\slash",
    "# not a comment",
    "schlüssel-ключ-鍵-🔑",
    "tab\there",
    "  padded  ",
)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
VALUE = st.one_of(
    TEXT, st.sampled_from(INJECTIONS), st.lists(st.sampled_from(INJECTIONS)).map("".join)
)
LEVEL = st.dictionaries(st.sampled_from(sorted(HELP)), VALUE, max_size=6)


def dotenv_line(name: str, value: str) -> str:
    """A .env line that python-dotenv reads back as exactly ``value``: single
    quotes, where only backslash and the quote itself are escaped."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"SECUREBUILD_{name.upper()}='{escaped}'\n"


def _literal(name: str, given: str, typed: bool, project: str) -> str:
    """What a setting given as ``given`` resolves to: the text, stripped; a
    relative path made absolute, against the current folder when it was typed
    (a flag, the environment), against the project's when it was written down."""
    value = given.strip()
    bare_command = name == "docker" and "/" not in value and not value.startswith("~")
    if name not in PATH_SETTINGS or not value or bare_command:
        return value
    if value.startswith("~"):
        try:
            value = str(Path(value).expanduser())
        except RuntimeError:  # no such user: left as it is
            return value
    if not value or Path(value).is_absolute():
        return value
    return str((Path.cwd() if typed else Path(project)) / value)


def _resolve(
    config: dict[str, Any], dotenv: dict[str, str], environ: dict[str, str], flags: dict[str, Any]
) -> tuple[Settings | SettingsError, str]:
    """Resolve in a fresh project folder holding the .env; the result, and the folder."""
    with tempfile.TemporaryDirectory() as cwd:
        Path(cwd, ".env").write_text(
            "".join(dotenv_line(n, v) for n, v in dotenv.items()), encoding="utf-8"
        )
        env = {f"SECUREBUILD_{n.upper()}": v for n, v in environ.items()}
        try:
            return resolve(config, flags=flags, environ=env, cwd=cwd), cwd
        except SettingsError as exc:
            return exc, cwd
        finally:
            assert sorted(p.name for p in Path(cwd).iterdir()) == [".env"]  # nothing ran


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=LEVEL, dotenv=LEVEL, environ=LEVEL, flags=LEVEL)
@example(config={}, dotenv={"key_file": "$(touch pwned)"}, environ={}, flags={})
@example(config={}, dotenv={}, environ={}, flags={"env_file": "a\0b"})
@example(config={}, dotenv={}, environ={"env_file": "~no-such-user-here/.env"}, flags={})
@example(config={"agent_key": "x"}, dotenv={"agent_key": "it's\n;"}, environ={}, flags={})
def test_resolution_is_literal_or_a_settings_error(
    config: dict[str, str], dotenv: dict[str, str], environ: dict[str, str], flags: dict[str, str]
) -> None:
    """Any text at any level: a Settings whose text values are exactly what the
    highest level gave (no expansion, quotes and newlines kept), or SettingsError.
    Any other exception fails the test."""
    dotenv = {n: v for n, v in dotenv.items() if "\0" not in v and "\r" not in v}  # see below
    result, project = _resolve(config, dotenv, environ, flags)
    if isinstance(result, SettingsError):
        assert result.line().strip()
        assert "\n" not in result.message
        return
    if any("env_file" in level for level in (flags, environ, config)):
        return  # another .env (or none) was read: the written one's values do not apply
    for name in LITERAL:
        levels = [(flags, True), (environ, True), (dotenv, False), (config, False)]
        given_at = [(level[name], typed) for level, typed in levels if name in level]
        if given_at:
            value, typed = given_at[0]
            assert getattr(result, name) == _literal(name, value, typed, project), name


LITERAL_LEVEL = st.dictionaries(st.sampled_from(LITERAL), VALUE, max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=LITERAL_LEVEL, dotenv=LITERAL_LEVEL, environ=LITERAL_LEVEL, flags=LITERAL_LEVEL)
def test_free_text_settings_round_trip(
    config: dict[str, str], dotenv: dict[str, str], environ: dict[str, str], flags: dict[str, str]
) -> None:
    """Settings no rule constrains always resolve, to exactly the text given (a
    relative path made absolute)."""
    # A .env is a text file: it holds no NUL, and a CR in it is a line break
    # (read with universal newlines, as python-dotenv and editors do).
    dotenv = {n: v for n, v in dotenv.items() if "\0" not in v and "\r" not in v}
    result, project = _resolve(config, dotenv, environ, flags)
    assert isinstance(result, Settings), result
    for name in LITERAL:
        levels = [(flags, True), (environ, True), (dotenv, False), (config, False)]
        given_at = [(level[name], typed) for level, typed in levels if name in level]
        value, typed = given_at[0] if given_at else (getattr(Settings(), name), False)
        assert getattr(result, name) == _literal(name, value, typed, project), name


# ---------------------------------------------------------------------------
# Malformed config files and .env, through the real CLI.

USER_TASKS = (
    "import securebuild_tasks\nfrom invoke import Collection\n"
    "ns = Collection()\nsecurebuild_tasks.add_to(ns)\n"
)
BAD_CONFIGS = {
    "unclosed-list": "securebuild:\n  image: [unclosed\n",
    "tab-indent": "securebuild:\n\timage: app\n",
    "section-is-a-list": "securebuild: [1, 2]\n",
    "section-is-text": "securebuild: just text\n",
    "not-a-mapping": "- just\n- a list\n",
}


@pytest.mark.parametrize("program", ["inv", "securebuild"])
@pytest.mark.parametrize("text", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_malformed_config_file_is_one_line(tmp_path: Path, program: str, text: str) -> None:
    """Bad YAML (or a securebuild section that is no mapping) in invoke.yaml under
    `inv`, or securebuild.yaml under `securebuild`: one line naming the file, exit 2."""
    (tmp_path / "tasks.py").write_text(USER_TASKS)
    name = "invoke.yaml" if program == "inv" else "securebuild.yaml"
    (tmp_path / name).write_text(text)
    module = "invoke" if program == "inv" else "securebuild_tasks"
    done = run_cli(module, tmp_path, "show-settings", env=user_env())
    one_line_error(done, 2, name)


@pytest.mark.parametrize(
    "text",
    [
        "SECUREBUILD_TAG=v1\nthis is not an assignment\n",
        "SECUREBUILD_TAG='never closed\n",
    ],
    ids=["no-assignment", "unclosed-quote"],
)
def test_malformed_dotenv_under_securebuild_command(tmp_path: Path, text: str) -> None:
    """The standalone command reports a broken .env like inv does (tests/cli covers inv)."""
    (tmp_path / ".env").write_text(text)
    done = run_cli("securebuild_tasks", tmp_path, "show-settings", env=user_env())
    one_line_error(done, 2, ".env line")


def test_dotenv_not_utf8_under_securebuild_command(tmp_path: Path) -> None:
    """A .env in another encoding is one line too, not a UnicodeDecodeError."""
    (tmp_path / ".env").write_bytes("SECUREBUILD_TAG=caf\xe9\n".encode("latin-1"))
    done = run_cli("securebuild_tasks", tmp_path, "show-settings", env=user_env())
    one_line_error(done, 2, ".env", "UTF-8")


# ---------------------------------------------------------------------------
# Shell syntax in the project's path and requirement lines, through a real build.

HOSTILE_DIR = "proj $(touch pwned-1); touch pwned-2 `touch pwned-3` 'q' \"dq\" é,src=pwned-4"


@pytest.mark.engine
def test_shell_syntax_in_paths_and_requirements_reaches_no_shell(
    project: Project, lab: Lab, engine: Engine, tmp_path: Path
) -> None:
    """A project under a directory named with `$()`, backticks, `;`, quotes, a
    comma and non-ASCII, with requirement comments full of the same, builds; no
    file named by an injection appears on the host (project, its parent, cwd,
    temp dirs) or anywhere in the image. (Its quote once broke docker's CSV
    parsing of `--secret src=...`; a comma could have added fields.)"""
    hostile = tmp_path / "work" / HOSTILE_DIR
    hostile.parent.mkdir()
    shutil.copytree(project.path, hostile)
    project.path = hostile
    project.env["SECUREBUILD_KNOWN_HOSTS"] = str(hostile / "known_hosts")
    project.env["SECUREBUILD_PIP_CONFIG"] = str(hostile / "pip.conf")
    project.requirements(
        "# $(touch pwned-5); touch pwned-6 `touch pwned-7` 'q' \"dq\" ключ\n"
        f"privpkg @ git+{lab.private_url}@v1.0.0 ; python_version >= '3' # $(touch pwned-8)\n"
    )
    done = project.inv(
        "build-image",
        env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _import_private(engine, project.image) == "1.0.0"
    # The test's tree (project, its parent) in depth; shared places at their top.
    planted = list(tmp_path.rglob("pwned*"))
    for place in (Path.cwd(), Path(tempfile.gettempdir()), Path("/tmp"), Path.home(), Path("/")):
        planted += list(place.glob("pwned*"))
    assert planted == []
    found = in_image(
        engine.docker, project.image, "sh", "-c", "find / -xdev -name 'pwned*' 2>/dev/null | head"
    )
    assert found == ""
    assert securebuild_leftovers() == []


@pytest.mark.engine
def test_comma_in_the_agent_socket_path_is_one_line(
    project: Project, lab: Lab, tmp_path: Path
) -> None:
    """docker splits `--ssh default=PATH` at commas (it would stat half a path);
    a TMPDIR with a comma, where the ephemeral agent lives, is refused in one
    line, and the agent and its directory are gone."""
    odd = tmp_path / "temp,dir"
    odd.mkdir()
    done = project.inv(
        "build-image",
        env={
            "SECUREBUILD_KEY_SOURCE": "file",
            "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
            "TMPDIR": str(odd),
        },
    )
    line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2, done.stderr[-2000:]
    assert line.startswith("securebuild: error: "), line
    assert "has a comma" in line
    assert "Traceback" not in done.stderr
    assert sorted(odd.iterdir()) == []
    assert securebuild_leftovers() == []


@pytest.mark.parametrize("program", ["inv", "securebuild"])
@pytest.mark.parametrize("kind", ["latin-1", "folder"])
def test_a_config_file_that_is_no_text_file_says_so(
    tmp_path: Path, program: str, kind: str
) -> None:
    """A config file in another encoding, or a folder in its place: one line that
    says which, rather than "must be a mapping"."""
    (tmp_path / "tasks.py").write_text(USER_TASKS)
    name = "invoke.yaml" if program == "inv" else "securebuild.yaml"
    if kind == "folder":
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_bytes("securebuild:\n  image: caf\xe9\n".encode("latin-1"))
    module = "invoke" if program == "inv" else "securebuild_tasks"
    done = run_cli(module, tmp_path, "show-settings", env=user_env())
    said = "is a folder, not a config file" if kind == "folder" else "is not UTF-8 text"
    one_line_error(done, 2, name, said)
