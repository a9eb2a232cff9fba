"""Tests for securebuild_tasks.settings: the five levels, conversions and validation."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from securebuild_tasks.errors import SettingsError
from securebuild_tasks.settings import (
    HELP,
    RESERVED_SECRET_IDS,
    Settings,
    check_relative,
    defaults,
    describe,
    resolve,
)

# Per setting, the raw value each level gives and the typed value it must resolve to.
# Neighbouring levels always differ, so a wrong winner cannot pass unnoticed.
LEVELS: dict[str, dict[str, tuple[Any, Any]]] = {
    "tag": {
        "config": ("from-config", "from-config"),
        "dotenv": ("from-dotenv", "from-dotenv"),
        "environ": ("from-environ", "from-environ"),
        "flag": ("from-flag", "from-flag"),
    },
    "key_lifetime": {
        "config": (100, 100),
        "dotenv": ("200", 200),
        "environ": ("300", 300),
        "flag": (400, 400),
    },
    "allow_insecure_keyring": {
        "config": (True, True),
        "dotenv": ("no", False),
        "environ": ("yes", True),
        "flag": (False, False),
    },
    "build_args": {
        "config": ({"A": "config"}, {"A": "config"}),
        "dotenv": ("A=dotenv", {"A": "dotenv"}),
        "environ": ("B=environ", {"B": "environ"}),
        "flag": ("C=flag,D=2", {"C": "flag", "D": "2"}),
    },
}


def _env_name(name: str) -> str:
    return f"SECUREBUILD_{name.upper()}"


def _resolve_levels(tmp_path: Path, name: str, levels: set[str]) -> Any:
    """Resolve ``name`` with only ``levels`` giving a value; return the typed result."""
    raw = {level: value for level, (value, _) in LEVELS[name].items() if level in levels}
    if "dotenv" in raw:
        (tmp_path / ".env").write_text(f"{_env_name(name)}={raw['dotenv']}\n", encoding="utf-8")
    settings = resolve(
        {name: raw["config"]} if "config" in raw else {},
        flags={name: raw["flag"]} if "flag" in raw else None,
        environ={_env_name(name): raw["environ"]} if "environ" in raw else {},
        cwd=tmp_path,
    )
    return getattr(settings, name)


def _write_dotenv(tmp_path: Path, text: str, name: str = ".env") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_config_beats_default(tmp_path: Path, name: str) -> None:
    """A value from the invoke config replaces the collection default."""
    expected = LEVELS[name]["config"][1]
    assert expected != getattr(Settings(), name)
    assert _resolve_levels(tmp_path, name, {"config"}) == expected


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_dotenv_beats_config(tmp_path: Path, name: str) -> None:
    """A SECUREBUILD_* line in .env beats the invoke config."""
    assert _resolve_levels(tmp_path, name, {"config", "dotenv"}) == LEVELS[name]["dotenv"][1]


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_environ_beats_dotenv(tmp_path: Path, name: str) -> None:
    """A SECUREBUILD_* environment variable beats the same name in .env."""
    assert _resolve_levels(tmp_path, name, {"dotenv", "environ"}) == LEVELS[name]["environ"][1]


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_flag_beats_environ(tmp_path: Path, name: str) -> None:
    """A task flag beats the environment variable."""
    assert _resolve_levels(tmp_path, name, {"environ", "flag"}) == LEVELS[name]["flag"][1]


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_flag_wins_over_all_levels(tmp_path: Path, name: str) -> None:
    """With every level set, the flag's value is the one used."""
    everything = {"config", "dotenv", "environ", "flag"}
    assert _resolve_levels(tmp_path, name, everything) == LEVELS[name]["flag"][1]


def test_flag_none_means_not_given(tmp_path: Path) -> None:
    """A flag whose value is None leaves the environment's value in place."""
    settings = resolve(
        {}, flags={"tag": None}, environ={"SECUREBUILD_TAG": "from-environ"}, cwd=tmp_path
    )
    assert settings.tag == "from-environ"


def test_defaults_when_no_level_sets_anything(tmp_path: Path) -> None:
    """With no config, environment, .env or flag, every setting is its default."""
    assert resolve({}, environ={}, cwd=tmp_path) == Settings(context=str(tmp_path))


def test_explicit_environ_replaces_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit environ mapping is used instead of os.environ, not merged with it."""
    monkeypatch.setenv("SECUREBUILD_TAG", "from-process")
    assert resolve({}, environ={}, cwd=tmp_path).tag == "latest"


def test_non_prefixed_environment_is_ignored(tmp_path: Path) -> None:
    """Variables without the SECUREBUILD_ prefix never become settings."""
    environ = {"TAG": "x", "BUILD_TAG": "y", "SECUREBUILDTAG": "z", "HOME": "/nowhere"}
    assert resolve({}, environ=environ, cwd=tmp_path) == Settings(context=str(tmp_path))


# --- the .env file --------------------------------------------------------------------


def test_dotenv_is_not_loaded_into_os_environ(tmp_path: Path) -> None:
    """Reading .env uses its values but leaves os.environ exactly as it was."""
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=from-dotenv\nUNRELATED_DOTENV_ONLY_VARIABLE=leak\n")
    before = dict(os.environ)
    settings = resolve({}, environ={}, cwd=tmp_path)
    assert settings.tag == "from-dotenv"
    assert dict(os.environ) == before
    assert "UNRELATED_DOTENV_ONLY_VARIABLE" not in os.environ


def test_dotenv_ignores_names_without_prefix(tmp_path: Path) -> None:
    """Other projects' variables in the same .env are left alone."""
    _write_dotenv(tmp_path, "DATABASE_URL=postgres://x\nTAG=nope\nSECUREBUILD_TAG=yes\n")
    assert resolve({}, environ={}, cwd=tmp_path).tag == "yes"


def test_dotenv_accepts_export_prefix(tmp_path: Path) -> None:
    """A shell-style `export NAME=VALUE` line in .env is read like NAME=VALUE."""
    _write_dotenv(tmp_path, "export SECUREBUILD_TAG=exported\n")
    assert resolve({}, environ={}, cwd=tmp_path).tag == "exported"


def test_dotenv_is_relative_to_cwd_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative env_file is looked up in the cwd given to resolve, not the process cwd."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    _write_dotenv(project, "SECUREBUILD_TAG=project\n")
    _write_dotenv(elsewhere, "SECUREBUILD_TAG=elsewhere\n")
    monkeypatch.chdir(elsewhere)
    assert resolve({}, environ={}, cwd=project).tag == "project"


def test_missing_dotenv_is_no_error(tmp_path: Path) -> None:
    """Without a .env file, resolve falls back to the lower levels."""
    settings = resolve({"tag": "from-config"}, environ={}, cwd=tmp_path)
    assert settings.tag == "from-config"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("SECUREBUILD_KEYRING_KEY=$(touch pwned)", "$(touch pwned)"),
        ("SECUREBUILD_KEYRING_KEY=`touch pwned`", "`touch pwned`"),
        ("SECUREBUILD_KEYRING_KEY=${HOME}/key", "${HOME}/key"),
        ('SECUREBUILD_KEYRING_KEY="${HOME} $(id)"', "${HOME} $(id)"),
        ("SECUREBUILD_KEYRING_KEY=$HOME", "$HOME"),
        ("SECUREBUILD_KEYRING_KEY='say \"hi\"'", 'say "hi"'),
        ('SECUREBUILD_KEYRING_KEY="it\'s"', "it's"),
        ("SECUREBUILD_KEYRING_KEY=a\"b'c", "a\"b'c"),
        ("SECUREBUILD_KEYRING_KEY=a;b; rm -rf /", "a;b; rm -rf /"),
        ("SECUREBUILD_KEYRING_KEY=two words", "two words"),
        ("SECUREBUILD_KEYRING_KEY='a # not a comment'", "a # not a comment"),
        ("SECUREBUILD_KEYRING_KEY=schlüssel-ключ-鍵-🔑", "schlüssel-ключ-鍵-🔑"),
        ("SECUREBUILD_KEYRING_KEY='single $(quoted) ${X}'", "single $(quoted) ${X}"),
    ],
)
def test_dotenv_values_are_literal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, expected: str
) -> None:
    """Shell syntax, quotes, ';', spaces and non-ASCII in .env are taken literally."""
    monkeypatch.setenv("HOME", "/home/should-not-appear")
    monkeypatch.chdir(tmp_path)
    _write_dotenv(tmp_path, line + "\n")
    settings = resolve({}, environ={"HOME": "/home/should-not-appear"}, cwd=tmp_path)
    assert settings.keyring_key == expected
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("SECUREBUILD_TAG=ok\nthis is not a binding\n", 2),
        ("A=1\n\n\nSECUREBUILD_TAG='x'trailing\n", 4),
        ('# a comment\nSECUREBUILD_TAG="never closed\n', 2),
        ("\n   \nSECUREBUILD_TAG ok\n", 3),
        ("SECUREBUILD_TAG=ok\n# comment\n\nA=1\n'quoted key=1\n", 5),
    ],
)
def test_malformed_dotenv_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    """A line python-dotenv cannot parse stops with the file and its real line number."""
    path = _write_dotenv(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        resolve({}, environ={}, cwd=tmp_path)
    assert f"{path} line {line}" in str(info.value)


def test_dotenv_not_utf8_is_settings_error(tmp_path: Path) -> None:
    """A .env file that is not UTF-8 gives a SettingsError naming the file."""
    path = tmp_path / ".env"
    path.write_bytes(b"SECUREBUILD_TAG=\xff\xfe\n")
    with pytest.raises(SettingsError, match=re.escape("cannot read the .env file")) as info:
        resolve({}, environ={}, cwd=tmp_path)
    assert str(path) in str(info.value)


def test_dotenv_that_is_a_directory_is_settings_error(tmp_path: Path) -> None:
    """A .env path that cannot be read as a file gives a SettingsError naming it."""
    (tmp_path / ".env").mkdir()
    with pytest.raises(SettingsError) as info:
        resolve({}, environ={}, cwd=tmp_path)
    assert str(tmp_path / ".env") in str(info.value)


def test_env_file_moved_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SECUREBUILD_ENV_FILE makes resolve read that file instead of .env."""
    monkeypatch.chdir(tmp_path)
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=default-dotenv\n")
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=moved\n", name="conf/build.env")
    settings = resolve({}, environ={"SECUREBUILD_ENV_FILE": "conf/build.env"}, cwd=tmp_path)
    assert settings.tag == "moved"
    assert settings.env_file == "conf/build.env"


def test_env_file_moved_by_flag_beats_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An --env-file flag beats SECUREBUILD_ENV_FILE for where the .env file is."""
    monkeypatch.chdir(tmp_path)
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=from-environ-file\n", name="environ.env")
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=from-flag-file\n", name="flag.env")
    settings = resolve(
        {},
        flags={"env_file": "flag.env"},
        environ={"SECUREBUILD_ENV_FILE": "environ.env"},
        cwd=tmp_path,
    )
    assert settings.tag == "from-flag-file"
    assert settings.env_file == "flag.env"


def test_a_typed_env_file_must_exist(tmp_path: Path) -> None:
    """SECUREBUILD_ENV_FILE names a file the user means: one that is not there is
    said, not passed over (the default .env, or one the config names, may be
    absent)."""
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=dev\n", name=".env.dev")
    settings = resolve({}, environ={"SECUREBUILD_ENV_FILE": ".env.dev"}, cwd=tmp_path)
    assert settings.tag == "dev"
    with pytest.raises(SettingsError, match=r"the \.env file .*nope\.env does not exist"):
        resolve({}, environ={"SECUREBUILD_ENV_FILE": "nope.env"}, cwd=tmp_path)
    assert resolve({"env_file": "absent.env"}, environ={}, cwd=tmp_path).tag == "latest"


def test_env_file_moved_by_config(tmp_path: Path) -> None:
    """The invoke config can point env_file elsewhere."""
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=default-dotenv\n")
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=from-config-file\n", name="config.env")
    settings = resolve({"env_file": "config.env"}, environ={}, cwd=tmp_path)
    assert settings.tag == "from-config-file"


def test_env_file_absolute_path(tmp_path: Path) -> None:
    """An absolute env_file is read as is, whatever the cwd."""
    path = _write_dotenv(tmp_path / "other", "SECUREBUILD_TAG=absolute\n", name="x.env")
    settings = resolve({}, flags={"env_file": str(path)}, environ={}, cwd=tmp_path / "cwd")
    assert settings.tag == "absolute"


@pytest.mark.parametrize("level", ["flag", "environ"])
def test_empty_env_file_reads_no_dotenv(tmp_path: Path, level: str) -> None:
    """An empty env_file from a higher level means no .env is read at all."""
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=should-not-be-read\n")
    settings = resolve(
        {},
        flags={"env_file": ""} if level == "flag" else None,
        environ={"SECUREBUILD_ENV_FILE": ""} if level == "environ" else {},
        cwd=tmp_path,
    )
    assert settings.tag == "latest"
    assert settings.env_file == ""


def test_dotenv_cannot_move_itself(tmp_path: Path) -> None:
    """SECUREBUILD_ENV_FILE inside .env is refused instead of silently misreported."""
    _write_dotenv(tmp_path, "SECUREBUILD_ENV_FILE=other.env\n")
    with pytest.raises(SettingsError, match=re.escape("SECUREBUILD_ENV_FILE in .env")):
        resolve({}, environ={}, cwd=tmp_path)


# --- unknown names ------------------------------------------------------------------


def test_the_programs_own_invoke_variables_are_not_settings(tmp_path: Path) -> None:
    """SECUREBUILD_INVOKE_* configure invoke under the `securebuild` program (its env
    prefix): they are not taken for unknown settings; in a .env file they still are."""
    environ = {"SECUREBUILD_INVOKE_RUN_ECHO": "true", "SECUREBUILD_TAG": "v9"}
    assert resolve({}, environ=environ, cwd=tmp_path).tag == "v9"
    (tmp_path / ".env").write_text("SECUREBUILD_INVOKE_RUN_ECHO=true\n")
    with pytest.raises(SettingsError, match="invoke_run_echo"):
        resolve({}, environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("level", "origin"),
    [
        ("config", "invoke config (securebuild.tagg)"),
        ("dotenv", "SECUREBUILD_TAGG in "),
        ("environ", "SECUREBUILD_TAGG in the environment"),
        ("flag", "flag --tagg"),
    ],
)
def test_unknown_setting_rejected_at_each_level(tmp_path: Path, level: str, origin: str) -> None:
    """A misspelt setting name is refused at every level, naming where it came from."""
    if level == "dotenv":
        _write_dotenv(tmp_path, "SECUREBUILD_TAGG=x\n")
    with pytest.raises(SettingsError) as info:
        resolve(
            {"tagg": "x"} if level == "config" else {},
            flags={"tagg": "x"} if level == "flag" else None,
            environ={"SECUREBUILD_TAGG": "x"} if level == "environ" else {},
            cwd=tmp_path,
        )
    message = str(info.value)
    assert "unknown setting 'tagg'" in message
    assert origin in message
    assert "known settings:" in message
    if level == "dotenv":
        assert str(tmp_path / ".env") in message


# --- conversions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_bool_from_string(tmp_path: Path, raw: str, expected: bool) -> None:
    """Boolean settings accept the usual true/false words from strings."""
    environ = {"SECUREBUILD_ALLOW_INSECURE_KEYRING": raw}
    assert resolve({}, environ=environ, cwd=tmp_path).allow_insecure_keyring is expected


def test_int_from_string(tmp_path: Path) -> None:
    """Whole-number settings are converted from strings, surrounding spaces allowed."""
    settings = resolve({}, environ={"SECUREBUILD_KEY_LIFETIME": " 42 "}, cwd=tmp_path)
    assert settings.key_lifetime == 42


def test_dict_from_string(tmp_path: Path) -> None:
    """NAME=VALUE[,NAME=VALUE] strings become dicts, keys and values stripped."""
    environ = {"SECUREBUILD_BUILD_ARGS": "A=1, B = two ,C=,"}
    settings = resolve({}, environ=environ, cwd=tmp_path)
    assert settings.build_args == {"A": "1", "B": "two", "C": ""}


def test_dict_value_may_contain_equals(tmp_path: Path) -> None:
    """Only the first '=' splits a pair; the rest belongs to the value."""
    settings = resolve({}, environ={"SECUREBUILD_BUILD_ARGS": "OPTS=a=b"}, cwd=tmp_path)
    assert settings.build_args == {"OPTS": "a=b"}


def test_dict_from_config_list_and_mapping(tmp_path: Path) -> None:
    """A list of pairs or a mapping from the invoke config both become str dicts."""
    from_list = resolve({"build_args": ["A=1", "B=2"]}, environ={}, cwd=tmp_path)
    from_mapping = resolve({"build_args": {"A": 1, "B": "2"}}, environ={}, cwd=tmp_path)
    assert from_list.build_args == {"A": "1", "B": "2"}
    assert from_mapping.build_args == {"A": "1", "B": "2"}


def test_secrets_from_string(tmp_path: Path) -> None:
    """The secrets setting parses ID=PATH pairs."""
    environ = {"SECUREBUILD_SECRETS": "npmrc=/home/u/.npmrc,extra.ca=certs/ca.pem"}
    settings = resolve({}, environ=environ, cwd=tmp_path)
    # A relative path typed in the environment is the current folder's.
    extra = str(Path.cwd() / "certs/ca.pem")
    assert settings.secrets == {"npmrc": "/home/u/.npmrc", "extra.ca": extra}


def test_text_is_stripped(tmp_path: Path) -> None:
    """Text settings lose surrounding whitespace."""
    assert resolve({}, environ={"SECUREBUILD_TAG": "  v1  "}, cwd=tmp_path).tag == "v1"


@pytest.mark.parametrize(
    ("name", "raw", "kind"),
    [
        ("allow_insecure_keyring", "maybe", "true or false"),
        ("allow_insecure_keyring", "2", "true or false"),
        ("key_lifetime", "ten", "a whole number"),
        ("key_lifetime", "1.5", "a whole number"),
        ("key_lifetime", "", "a whole number"),
        ("build_args", "NOEQUALS", "NAME=VALUE pairs"),
        ("build_args", "A=1,=2", "NAME=VALUE pairs"),
        ("secrets", "just-a-path", "NAME=VALUE pairs"),
    ],
)
def test_invalid_string_values(tmp_path: Path, name: str, raw: str, kind: str) -> None:
    """A string that does not convert gives a SettingsError naming setting, origin and type."""
    with pytest.raises(SettingsError) as info:
        resolve({}, environ={_env_name(name): raw}, cwd=tmp_path)
    message = str(info.value)
    assert f"setting {name} from environment variable {_env_name(name)}" in message
    assert f"must be {kind}" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tag", 5),
        ("tag", None),
        ("key_lifetime", True),
        ("key_lifetime", [1]),
        ("key_lifetime", None),
        ("key_lifetime", {"a": 1}),
        ("key_lifetime", 3600.9),
        ("key_lifetime", float("inf")),
        ("key_lifetime", 2**31),
        ("key_lifetime", 0),
        ("allow_insecure_keyring", 1),
        ("build_args", 5),
    ],
)
def test_invalid_config_types(tmp_path: Path, name: str, value: Any) -> None:
    """Config values of the wrong type are refused, not coerced."""
    with pytest.raises(SettingsError) as info:
        resolve({name: value}, environ={}, cwd=tmp_path)
    assert f"setting {name} from invoke config securebuild.{name}" in str(info.value)


@pytest.mark.parametrize(
    ("level", "origin"),
    [
        ("config", "invoke config securebuild.key_lifetime"),
        ("dotenv", "SECUREBUILD_KEY_LIFETIME in .env"),
        ("environ", "environment variable SECUREBUILD_KEY_LIFETIME"),
        ("flag", "flag --key-lifetime"),
    ],
)
def test_invalid_value_names_its_level(tmp_path: Path, level: str, origin: str) -> None:
    """The error for a bad value says which level gave it."""
    if level == "dotenv":
        _write_dotenv(tmp_path, "SECUREBUILD_KEY_LIFETIME=ten\n")
    with pytest.raises(SettingsError) as info:
        resolve(
            {"key_lifetime": "ten"} if level == "config" else {},
            flags={"key_lifetime": "ten"} if level == "flag" else None,
            environ={"SECUREBUILD_KEY_LIFETIME": "ten"} if level == "environ" else {},
            cwd=tmp_path,
        )
    assert f"setting key_lifetime from {origin} must be a whole number" in str(info.value)


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("key_source", "ssh"),
        ("builder", "docker"),
        ("progress", "fancy"),
        ("passphrase_source", "environment"),
        ("installer", "poetry"),
    ],
)
def test_choice_outside_allowed_values(tmp_path: Path, name: str, value: str) -> None:
    """A choice setting outside its allowed values is refused with the allowed list."""
    with pytest.raises(SettingsError) as info:
        resolve({}, flags={name: value}, environ={}, cwd=tmp_path)
    message = str(info.value)
    assert f"setting {name} from flag --{name.replace('_', '-')} is {value!r}" in message
    assert "use one of: auto" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("image", "My/App"),
        ("image", "app:tag"),
        ("image", ""),
        ("image", "app/"),
        ("tag", "-leading-dash"),
        ("tag", "has space"),
        ("tag", ""),
        ("tag", "x" * 129),
        ("platform", "linux"),
        ("platform", "linux/amd64;rm"),
        ("network", "-x"),
        ("network", "a b"),
        ("target", "$(stage)"),
    ],
)
def test_invalid_names_refused(tmp_path: Path, name: str, value: str) -> None:
    """Image, tag, platform, network and target must match docker's syntax."""
    with pytest.raises(SettingsError, match=f"setting {name} from .* is not a valid {name}"):
        resolve({}, flags={name: value}, environ={}, cwd=tmp_path)


def test_valid_docker_names_accepted(tmp_path: Path) -> None:
    """Registry hosts with ports, platform variants and stage names pass validation."""
    flags = {
        "image": "registry.example.com:5000/team/my_app-x",
        "tag": "v1.2.3_rc-1",
        "platform": "linux/arm64/v8",
        "network": "host",
        "target": "runtime.stage-2",
    }
    settings = resolve({}, flags=flags, environ={}, cwd=tmp_path)
    assert settings.image_ref == "registry.example.com:5000/team/my_app-x:v1.2.3_rc-1"
    assert settings.platform == "linux/arm64/v8"


@pytest.mark.parametrize("value", ["0", "-5"])
def test_key_lifetime_must_be_positive(tmp_path: Path, value: str) -> None:
    """A key lifetime of zero or less is refused."""
    with pytest.raises(SettingsError, match=r"key_lifetime .* must be from 1 to"):
        resolve({}, environ={"SECUREBUILD_KEY_LIFETIME": value}, cwd=tmp_path)


@pytest.mark.parametrize("name", ["keyring_service", "keyring_key"])
def test_keyring_names_must_not_be_empty(tmp_path: Path, name: str) -> None:
    """Empty (or blank) keyring names are refused, naming the setting."""
    with pytest.raises(SettingsError, match=f"setting {name} from .* must not be empty"):
        resolve({}, environ={_env_name(name): "   "}, cwd=tmp_path)


def test_key_source_file_needs_key_file(tmp_path: Path) -> None:
    """key_source=file without key_file is refused with a next step."""
    with pytest.raises(SettingsError) as info:
        resolve({}, environ={"SECUREBUILD_KEY_SOURCE": "file"}, cwd=tmp_path)
    message = str(info.value)
    assert "setting key_source from environment variable SECUREBUILD_KEY_SOURCE" in message
    assert "no key_file is set" in message
    assert "--key-file" in message


def test_key_source_file_with_key_file_accepted(tmp_path: Path) -> None:
    """key_source=file with a key_file resolves."""
    environ = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": "~/.ssh/deploy"}
    settings = resolve({}, environ=environ, cwd=tmp_path)
    home = str(Path("~/.ssh/deploy").expanduser())  # expanded once, for every reader
    assert (settings.key_source, settings.key_file) == ("file", home)


@pytest.mark.parametrize(
    "arg",
    [
        "SSH_PRIVATE_KEY",
        "GITHUB_TOKEN",
        "github_token",
        "NPM_AUTH",
        "DB_PASSWORD",
        "PGPASSWD",
        "AWS_SECRET_ACCESS_KEY",
        "GPG_PASSPHRASE",
        "GIT_CREDENTIALS",
        "NETRC",
        "GITHUB_PAT",
        "pat",
        "CI_JOB_JWT",
        "API_BEARER",
    ],
)
def test_secret_looking_build_args_refused(tmp_path: Path, arg: str) -> None:
    """Build args named like secrets are refused, and the value is not echoed."""
    value = "s3cr3t-VALUE-that-must-not-leak"
    with pytest.raises(SettingsError) as info:
        resolve({}, flags={"build_args": f"{arg}={value}"}, environ={}, cwd=tmp_path)
    message = str(info.value)
    assert repr(arg) in message
    assert "looks like a secret" in message
    assert value not in message


def test_plain_build_args_accepted(tmp_path: Path) -> None:
    """Ordinary build args pass through unchanged."""
    flags = {"build_args": "PYTHON_VERSION=3.12,APP_ENV=prod,EXTRA_PYTHONPATH=/x,COMPAT=1"}
    settings = resolve({}, flags=flags, environ={}, cwd=tmp_path)
    assert settings.build_args == {
        "PYTHON_VERSION": "3.12",
        "APP_ENV": "prod",
        "EXTRA_PYTHONPATH": "/x",
        "COMPAT": "1",
    }


@pytest.mark.parametrize("arg", ["1ST", "A-B", "A B", "$(X)"])
def test_invalid_build_arg_name_refused(tmp_path: Path, arg: str) -> None:
    """Build arg names must be identifiers."""
    with pytest.raises(SettingsError, match="has a build arg name that is none"):
        resolve({"build_args": {arg: "1"}}, environ={}, cwd=tmp_path)


@pytest.mark.parametrize("secret_id", RESERVED_SECRET_IDS)
def test_reserved_secret_ids_refused(tmp_path: Path, secret_id: str) -> None:
    """User secrets may not take an id the template itself uses."""
    environ = {"SECUREBUILD_SECRETS": f"{secret_id}=/tmp/file"}
    with pytest.raises(SettingsError) as info:
        resolve({}, environ=environ, cwd=tmp_path)
    assert f"has the secret id {secret_id!r}, which the template uses itself" in str(info.value)


@pytest.mark.parametrize("secret_id", ["a b", "x/y", "$(id)", "ключ"])
def test_invalid_secret_ids_refused(tmp_path: Path, secret_id: str) -> None:
    """Secret ids outside letters, digits, '.', '_' and '-' are refused."""
    with pytest.raises(SettingsError, match="has a secret id that is none"):
        resolve({"secrets": {secret_id: "/tmp/file"}}, environ={}, cwd=tmp_path)


def test_secret_without_path_refused(tmp_path: Path) -> None:
    """A secret id with an empty path is refused, naming the id."""
    with pytest.raises(SettingsError, match="gives no path for secret 'npmrc'"):
        resolve({}, environ={"SECUREBUILD_SECRETS": "npmrc="}, cwd=tmp_path)


@pytest.mark.parametrize(
    "value",
    ["../requirements.txt", "/etc/requirements.txt", "deps/../../requirements.txt", ".."],
)
def test_requirements_outside_context_refused(tmp_path: Path, value: str) -> None:
    """A requirements path that leaves the build context is refused, naming its origin."""
    with pytest.raises(SettingsError) as info:
        resolve({}, environ={"SECUREBUILD_REQUIREMENTS": value}, cwd=tmp_path)
    message = str(info.value)
    assert "setting requirements from environment variable SECUREBUILD_REQUIREMENTS" in message
    assert "must be a path inside the build context" in message


@pytest.mark.parametrize("value", [".", "./", "deps/.."])
def test_the_context_itself_is_no_wheelhouse(tmp_path: Path, value: str) -> None:
    """`inv vendor` replaces its wheelhouse and `inv clean` removes it: never the context."""
    with pytest.raises(SettingsError, match=r"setting wheelhouse from .* must be a path inside"):
        resolve({}, environ={"SECUREBUILD_WHEELHOUSE": value}, cwd=tmp_path)


def test_empty_requirements_refused(tmp_path: Path) -> None:
    """An empty requirements path is refused too."""
    with pytest.raises(SettingsError, match="must be a path inside the build context"):
        resolve({"requirements": ""}, environ={}, cwd=tmp_path)


@pytest.mark.parametrize("value", ["deps/requirements.txt", "./requirements.txt", "a..b.txt"])
def test_requirements_inside_context_accepted(tmp_path: Path, value: str) -> None:
    """Relative paths that stay inside the context are accepted as given."""
    settings = resolve({}, flags={"requirements": value}, environ={}, cwd=tmp_path)
    assert settings.requirements == value


def test_check_relative_names_origin() -> None:
    """check_relative refuses an escaping path and names the origin it was given."""
    with pytest.raises(SettingsError, match="setting context from a test origin must be"):
        check_relative("../up", "context", {"context": "a test origin"})


# --- helpers ------------------------------------------------------------------------


def test_every_setting_has_help() -> None:
    """HELP (which also defines the known names) covers exactly the Settings fields."""
    assert set(HELP) == {f.name for f in fields(Settings)}


def test_defaults_match_settings_and_are_fresh() -> None:
    """defaults() mirrors Settings() and hands out new dicts each call."""
    first = defaults()
    assert first == {f.name: getattr(Settings(), f.name) for f in fields(Settings)}
    first["build_args"]["X"] = "1"
    assert defaults()["build_args"] == {}


def test_image_ref() -> None:
    """image_ref joins image and tag."""
    assert Settings(image="team/app", tag="v2").image_ref == "team/app:v2"


def test_describe_rows(tmp_path: Path) -> None:
    """describe gives one row per setting, dicts as NAME=VALUE lists, with help text."""
    settings = resolve({}, flags={"build_args": "A=1,B=2", "tag": "v9"}, environ={}, cwd=tmp_path)
    rows = {name: (value, help_text) for name, value, help_text in describe(settings)}
    assert set(rows) == set(HELP)
    assert rows["build_args"] == ("A=1,B=2", HELP["build_args"])
    assert rows["tag"] == ("v9", HELP["tag"])
    assert rows["key_lifetime"][0] == "3600"


@pytest.mark.parametrize(
    "url",
    [
        "https://__token__:s3cr3t@pkgs.example/simple",
        "https://deploy:s3/cr3t@mirror.example.com/simple",  # a "/" in the token
        "https://ci:s3cr3t/@mirror.example.com:8443/simple",
    ],
)
def test_build_arg_value_with_url_credentials_refused(tmp_path: Path, url: str) -> None:
    """A build arg whose value carries an index token is refused, token not echoed."""
    env = {"SECUREBUILD_BUILD_ARGS": f"PIP_EXTRA_INDEX_URL={url}"}
    with pytest.raises(SettingsError, match="URL with credentials") as info:
        resolve({}, environ=env, cwd=tmp_path)
    assert "s3" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "git+https://github.com/org/repo@v1.2",
        "https://mirror.example.com:8443/files/pkg@2.0",
        "https://mirror.example.com:8443",
    ],
)
def test_a_url_with_a_port_or_a_ref_is_no_credential(tmp_path: Path, url: str) -> None:
    """An "@" after the host (a git ref) or a port is not mistaken for user info."""
    settings = resolve({}, environ={"SECUREBUILD_BUILD_ARGS": f"SOURCE={url}"}, cwd=tmp_path)
    assert settings.build_args == {"SOURCE": url}


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("SECUREBUILD_BUILD_ARGS", "STORAGE_KEY:Zm9vYmFyU0VDUkVUc2VjcmV0MA=="),
        ("SECUREBUILD_BUILD_ARGS", "token Zm9vYmFyU0VDUkVUc2VjcmV0MA=="),
        ("SECUREBUILD_SECRETS", "creds:Zm9vYmFyU0VDUkVUc2VjcmV0MA==/x"),
        # base64url, with "-": looks like a name with a typo
        ("SECUREBUILD_BUILD_ARGS", "GIT_REF=main,Zm9vYmFy-4P86HE0uX2BxgpOg==x"),
        # padding alone after the "=": a name that is valid, a value of "="
        ("SECUREBUILD_BUILD_ARGS", "GIT_REF=main,Zm9vYmFyU0VDUkVUMTIzNDU=="),
        ("SECUREBUILD_SECRETS", "Zm9vYmFyU0VDUkVUMTIzNDU=="),
        # one "=" of padding: a token-like name with an empty value
        ("SECUREBUILD_BUILD_ARGS", "GIT_REF=main,Zm9vYmFyU0VDUkVUMTIzNDU="),
        ("SECUREBUILD_SECRETS", "Zm9vYmFyU0VDUkVUMTIzNDU="),
    ],
)
def test_a_value_typed_as_a_name_is_not_echoed(tmp_path: Path, setting: str, value: str) -> None:
    """A token's "=" padding splits it into a "name" and a value: the refusal of
    that name does not show it."""
    with pytest.raises(SettingsError) as info:
        resolve({}, environ={setting: value}, cwd=tmp_path)
    assert "Zm9vYmFy" not in info.value.line()


def test_several_platforms_refused(tmp_path: Path) -> None:
    """A multi-platform value cannot be loaded into one engine: refused with the fix."""
    with pytest.raises(SettingsError, match="several platforms"):
        resolve({}, environ={"SECUREBUILD_PLATFORM": "linux/amd64,linux/arm64"}, cwd=tmp_path)


def test_named_buildx_builder_needs_buildx(tmp_path: Path) -> None:
    """A named buildx builder is refused with the classic builder, and must look
    like a builder name (it reaches docker's argv)."""
    named = resolve({"buildx_builder": "shared"}, environ={}, cwd=tmp_path)
    assert named.buildx_builder == "shared"
    with pytest.raises(SettingsError, match="builder is 'classic'"):
        resolve({"buildx_builder": "shared", "builder": "classic"}, environ={}, cwd=tmp_path)
    with pytest.raises(SettingsError, match="not a valid buildx_builder"):
        resolve({"buildx_builder": "--driver=evil"}, environ={}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("cache_to", "type=local,dest=.buildcache,mode=max"),
        ("cache_to", 'type=local,"dest=a, b",mode=min'),
        ("cache_to", "type=registry,ref=127.0.0.1:5000/app:buildcache,mode=max"),
        ("cache_to", "type=inline"),
        ("cache_from", "type=local,src=/var/cache/app"),
        ("cache_from", "type=gha,scope=main"),
    ],
)
def test_cache_specs_are_taken(tmp_path: Path, name: str, spec: str) -> None:
    assert getattr(resolve({name: spec}, environ={}, cwd=tmp_path), name) == spec


@pytest.mark.parametrize(
    ("name", "spec", "said"),
    [
        ("cache_to", "dest=.buildcache", "needs one type="),
        ("cache_to", "type=floppy,dest=x", "needs one type="),
        ("cache_to", "type=local,type=registry,dest=x", "needs one type="),
        ("cache_to", "type=local,mode=max", "no dest= directory"),
        ("cache_from", "type=local,dest=x", "no src= directory"),
        ("cache_to", "type=local,dest", "cannot be read as key=value"),
        ("cache_to", 'type=local,"dest=x', "cannot be read as key=value"),
        ("cache_to", "type=local,dest=x\nmode=max", "line break"),
    ],
)
def test_bad_cache_specs_say_what_is_wrong(tmp_path: Path, name: str, spec: str, said: str) -> None:
    with pytest.raises(SettingsError, match=said) as caught:
        resolve({name: spec}, environ={}, cwd=tmp_path)
    assert name in caught.value.line()


@pytest.mark.parametrize(
    "spec",
    [
        "type=s3,region=eu,bucket=b,access_key_id=AKIAEXAMPLE,secret_access_key=wJalrXUtnFEMIK7",
        "type=gha,token=ghs_wJalrXUtnFEMIK7MDENG",
        "type=azblob,account_url=https://acct.blob.example,secret_access_key=wJalrXUtnFEMIK7",
        "type=registry,ref=https://user:wJalrXUtnFEMIK7@registry.example/app",
        "type=s3,bucket=b,wJalrXUtnFEMIK7",
    ],
)
def test_cache_credentials_are_refused_and_never_echoed(tmp_path: Path, spec: str) -> None:
    """A credential in a cache spec would sit in docker's argv, visible to `ps`."""
    with pytest.raises(SettingsError, match=r"has a credential in it|field 3 is not") as caught:
        resolve({"cache_to": spec}, environ={}, cwd=tmp_path)
    assert "wJalrXUtnFEMIK7" not in caught.value.line()
    assert "AKIAEXAMPLE" not in caught.value.line()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("key_file", "~nosuchuser-sbt/.ssh/id_ed25519"),
        ("known_hosts", "~nosuchuser-sbt/kh"),
        ("ca_bundle", "~nosuchuser-sbt/ca.pem"),
        ("pip_config", "~nosuchuser-sbt/pip.conf"),
        ("secrets", "extra=~nosuchuser-sbt/x"),
    ],
)
def test_a_path_in_the_home_of_no_user_is_one_error(tmp_path: Path, name: str, value: str) -> None:
    """ "~name/..." where no user has that name: one line naming the setting, rather
    than the RuntimeError pathlib raises wherever the path is first used."""
    with pytest.raises(SettingsError) as info:
        resolve({}, flags={name: value}, environ={}, cwd=tmp_path)
    assert f"setting {name} from flag --{name.replace('_', '-')}" in str(info.value)
    assert "home folder of a user who does not exist" in str(info.value)
    assert resolve({}, flags={name: value.replace("~nosuchuser-sbt", "~")}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("value", "refused"), [("1", False), ("", False), ("0", True), ("false", True)]
)
def test_compile_bytecode_is_1_or_nothing(tmp_path: Path, value: str, refused: bool) -> None:
    """The template compiles .pyc files whenever COMPILE_BYTECODE is set, so 0 or
    false, which read as "no", are refused rather than turning it on."""
    flags = {"build_args": f"COMPILE_BYTECODE={value}"}
    if not refused:
        assert resolve({}, flags=flags, environ={}, cwd=tmp_path).build_args == {
            "COMPILE_BYTECODE": value
        }
        return
    with pytest.raises(SettingsError, match=f"has COMPILE_BYTECODE='{value}', which the template"):
        resolve({}, flags=flags, environ={}, cwd=tmp_path)


def test_a_env_file_that_is_a_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A .env that is a FIFO with no writer would block the read forever."""
    import os

    os.mkfifo(tmp_path / ".env")
    with pytest.raises(SettingsError, match=r"is not a regular file \(a pipe, device or socket\)"):
        resolve({}, environ={}, cwd=tmp_path)


@pytest.mark.parametrize("value", [None, ["a"], {"b": "c"}])
def test_a_build_arg_or_secret_without_a_plain_value_is_refused(
    tmp_path: Path, value: object
) -> None:
    """`A:` with no value in YAML (null), a list or a map: refused in one line, not
    passed on as the text "None" or a Python repr."""
    for name in ("build_args", "secrets"):
        with pytest.raises(SettingsError, match=f"setting {name} from invoke config"):
            resolve({name: {"A": value}}, environ={}, cwd=tmp_path)


def test_a_bare_name_in_the_env_file_is_refused(tmp_path: Path) -> None:
    """`SECUREBUILD_TAG` alone on a line would erase the value an earlier line set."""
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=v1\n\nSECUREBUILD_TAG\n")
    with pytest.raises(SettingsError) as refused:
        resolve({}, environ={}, cwd=tmp_path)
    assert refused.value.message == (
        f"{tmp_path / '.env'} line 3 names SECUREBUILD_TAG without a value"
    )
    _write_dotenv(tmp_path, "SECUREBUILD_TAG=v1\nOTHER_TOOL_FLAG\n")  # not ours: left alone
    assert resolve({}, environ={}, cwd=tmp_path).tag == "v1"


@pytest.mark.parametrize("name", ["requirements", "lock_file", "lock_input", "wheelhouse"])
@pytest.mark.parametrize("value", ["reqs[prod].txt", "deps/*.txt", "req?.txt"])
def test_a_copied_path_with_wildcards_is_refused(tmp_path: Path, name: str, value: str) -> None:
    """The template copies these by name, and COPY reads *, ? and [ as a pattern: it
    would copy another file, or none, without a word."""
    with pytest.raises(SettingsError) as info:
        resolve({}, environ={f"SECUREBUILD_{name.upper()}": value}, cwd=tmp_path)
    assert f"setting {name} from environment variable SECUREBUILD_{name.upper()} has" in (
        info.value.line()
    )
    assert "which the build's COPY reads as a wildcard" in info.value.line()


def test_an_empty_value_after_a_variable_name_is_kept(tmp_path: Path) -> None:
    """`BASE_IMAGE_USER=` (root) and `http_proxy=` are values, not token padding."""
    environ = {"SECUREBUILD_BUILD_ARGS": "BASE_IMAGE_USER=,http_proxy="}
    settings = resolve({}, environ=environ, cwd=tmp_path)
    assert settings.build_args == {"BASE_IMAGE_USER": "", "http_proxy": ""}
