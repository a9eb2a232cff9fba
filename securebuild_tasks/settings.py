"""Settings: one ``securebuild`` namespace, resolved from five levels.

Highest first: task flag, ``SECUREBUILD_*`` environment variable, the project's
``.env`` file (read with python-dotenv, never loaded into ``os.environ``),
invoke configuration files, collection defaults. Every value is validated here,
so the rest of the code works with typed, checked data.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import SettingsError

ENV_PREFIX = "SECUREBUILD_"
NAMESPACE = "securebuild"

# Names that must never travel as build args: build args are stored in the image
# history and in BuildKit's cache records in plain text.
_SECRET_NAME = re.compile(
    r"(KEY|TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|AUTH|PRIVATE|NETRC|JWT|BEARER"
    r"|(?<![A-Z])PAT(?![A-Z]))",  # GITHUB_PAT, not PATH
    re.IGNORECASE,
)
# A docker image name without tag (registry/host:port/path, lowercase path parts).
_IMAGE_NAME = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
# An image reference: a name, then a tag, a digest or both.
_IMAGE_REF = re.compile(
    _IMAGE_NAME.pattern.rstrip("$") + r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?$"
)
# "scheme://user:token@" or "scheme://token@" in a URL, also where the token
# holds a "/" (base64 does): "user:" then anything up to an "@", unless what
# follows the ":" is a port ("host:8080/path@ref" is a URL with a git ref).
SLASHED_USERINFO = r"[^/\s@:\[]+:(?!\d+(?:/|$))[^\s@]*@"
_URL_CREDENTIALS = re.compile(
    rf"[a-z][a-z0-9+.-]*://(?:[^/\s@]+@|{SLASHED_USERINFO})", re.IGNORECASE
)
# A name no one gives a variable: 16 or more characters mixing lower case, upper
# case and digits, as base64 tokens do.
_TOKEN_LIKE = re.compile(r"^(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9+/_-]{16,}$")
# "@" then a host: a dotted name, an IP literal or localhost, then a port, "/" or
# the end (an index URL's user info, however the token before it is written).
_AT_HOST = re.compile(
    r"@(?:[a-z0-9-]+(?:\.[a-z0-9-]+)+|\[[0-9a-f:.]+\]|localhost)(?::\d+)?(?:[/?#]|$)",
    re.IGNORECASE,
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ONE_PLATFORM = r"[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_]+)?"
_PLATFORM = re.compile(rf"^{_ONE_PLATFORM}(,{_ONE_PLATFORM})*$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

KEY_SOURCES = ("auto", "agent", "keyring", "file")
BUILDERS = ("auto", "buildx", "classic")
PROGRESS = ("auto", "plain", "tty")
INSTALLERS = ("auto", "uv", "pip")
PASSPHRASE_SOURCES = ("auto", "keyring", "prompt")
INDEX_TOKEN_SOURCES = ("auto", "environment", "keyring")

#: Where a private index's token may come from besides the keyring. It is not a
#: setting: settings are shown (`show-settings`), and a token must never be.
INDEX_TOKEN_ENV = f"{ENV_PREFIX}INDEX_TOKEN"

#: The prefix under which the `securebuild` program's invoke reads its own config
#: from the environment (``SECUREBUILD_INVOKE_RUN_ECHO``): not settings.
INVOKE_ENV_PREFIX = f"{ENV_PREFIX}INVOKE"

#: Secret ids the template itself uses; user secrets may not take them.
RESERVED_SECRET_IDS = (
    "known_hosts",
    "ca_bundle",
    "pip_config",
    "uv_config",
    "netrc",
    "build_requires",
)


# A token in a URL's query ("?private_token=...", a signed URL's
# "X-Amz-Signature=..."): it would reach the build args and the image too.
# The parameter's name ends in one of these words (private_token, access_key,
# X-Amz-Signature, sig); "author=" or "design=" is no token.
QUERY_SECRET = re.compile(
    r"[a-z][a-z0-9+.-]*://[^\s?#]*\?(?:[^\s#]*&)?(?:[\w.-]*[_.-])?"
    r"(?:token|key|apikey|secret|sig|signature|password|passwd|auth|credential|session)=",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Settings:
    """Every setting of the ``securebuild`` namespace, typed and validated."""

    image: str = "app"
    tag: str = "latest"
    dockerfile: str = ""
    context: str = "."
    requirements: str = "requirements.txt"
    lock_input: str = ""
    lock_file: str = "requirements.lock"
    wheelhouse: str = "vendor/python"
    target: str = ""
    platform: str = ""
    network: str = ""
    base_image: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    installer: str = "auto"
    cache_from: str = ""
    cache_to: str = ""
    audit: bool = False
    docker: str = ""
    builder: str = "auto"
    buildx_builder: str = ""
    progress: str = "auto"
    key_source: str = "auto"
    agent_socket: str = ""
    agent_key: str = ""
    keyring_service: str = "securebuild-tasks"
    keyring_key: str = "ssh-key"
    allow_insecure_keyring: bool = False
    key_file: str = ""
    passphrase_source: str = "auto"  # noqa: S105 - names a source, holds no passphrase
    key_lifetime: int = 3600
    known_hosts: str = ""
    ca_bundle: str = ""
    pip_config: str = ""
    uv_config: str = ""
    netrc: str = ""
    index_url: str = ""
    index_username: str = "__token__"
    index_token_source: str = "auto"  # noqa: S105 - names a source, holds no token
    keyring_token: str = "index-token"  # noqa: S105 - an entry name, holds no token
    secrets: dict[str, str] = field(default_factory=dict)
    env_file: str = ".env"

    @property
    def image_ref(self) -> str:
        """The full ``name:tag`` reference of the image to build."""
        return f"{self.image}:{self.tag}"


#: One line per setting, shown by ``--help`` and the README.
HELP: dict[str, str] = {
    "image": "image name to build (without tag)",
    "tag": "image tag",
    "dockerfile": "Dockerfile; empty: the context's Dockerfile, else the built-in template",
    "context": "build context directory",
    "requirements": "requirements file, relative to the context",
    "lock_input": "what `inv lock` resolves; empty: requirements.in, else pyproject.toml",
    "lock_file": "lock file written by `inv lock` and used by builds when present",
    "wheelhouse": "folder `inv vendor` fills; builds use it offline when present",
    "target": "build stage to stop at (docker build --target)",
    "platform": "target platform, e.g. linux/amd64",
    "network": "network for RUN steps (e.g. host, none); empty: the engine's default",
    "base_image": "base image (build arg BASE_IMAGE); empty: the Dockerfile's own ARG BASE_IMAGE"
    " default (python:3.12-slim in the built-in template)",
    "build_args": "extra non-secret build args, NAME=VALUE[,NAME=VALUE]",
    "no_cache": "build without BuildKit's cache (private packages are fetched again)",
    "installer": "what installs packages in the build: auto (uv; pip only on a platform uv"
    " has no wheel for), uv or pip",
    "cache_from": "an exported build cache to start from (buildx --cache-from), e.g."
    " type=local,src=.buildcache",
    "cache_to": "export the build cache (buildx --cache-to), e.g."
    " type=local,dest=.buildcache,mode=max; it holds private code, never a key",
    "audit": "audit every built image for private-key material (as build-image --audit)",
    "docker": "docker binary to use; empty: the first on PATH that can run BuildKit",
    "builder": "auto, buildx (docker buildx build) or classic (DOCKER_BUILDKIT=1 docker build)",
    "buildx_builder": "a named buildx builder to build on (docker buildx build --builder NAME);"
    " empty: the current one",
    "progress": "build output: auto, plain or tty",
    "key_source": "where the SSH key comes from: auto, agent, keyring or file",
    "agent_socket": "ssh-agent socket; empty: $SSH_AUTH_SOCK",
    "agent_key": "forward only this agent key (SHA256 fingerprint or comment)",
    "keyring_service": "keyring service name holding the key and passphrases",
    "keyring_key": "keyring entry name of the private key",
    "allow_insecure_keyring": "accept a keyring backend that stores secrets in plain text",
    "key_file": "private key file (key_source=file), mode 600 as ssh wants it",
    "passphrase_source": "where the passphrase of key_file comes from: auto, keyring or prompt",
    "key_lifetime": "seconds the ephemeral agent keeps the key (ssh-add -t)",
    "known_hosts": "known_hosts file with the git hosts' keys; empty: ~/.ssh/known_hosts",
    "ca_bundle": "CA bundle for TLS-inspecting proxies, given to pip as a secret mount",
    "pip_config": "pip.conf (index URLs, tokens) given to pip as a secret mount",
    "uv_config": "uv.toml for `inv lock` (secret mount); empty: made from pip_config",
    "netrc": ".netrc with index credentials, given to pip and uv as a secret mount",
    "index_url": "private package index pip and uv use instead of PyPI (no credentials in it)",
    "index_username": "user name sent to index_url with the token",
    "index_token_source": "where index_url's token comes from: auto, environment"
    " (SECUREBUILD_INDEX_TOKEN) or keyring",
    "keyring_token": "keyring entry name of index_url's token (`inv store-token`)",
    "secrets": "extra BuildKit secrets, ID=PATH[,ID=PATH]",
    "env_file": ".env file read for SECUREBUILD_* values",
}


def defaults() -> dict[str, Any]:
    """Return the collection defaults, for ``Collection.configure``."""
    base = Settings()
    return {f.name: _plain(getattr(base, f.name)) for f in fields(Settings)}


def collection_defaults() -> dict[str, Any]:
    """The defaults a task collection configures: all but the NAME=VALUE maps.

    invoke refuses to merge a config file's value over a collection default of
    another kind (a string over a mapping), so ``build_args: "A=1,B=2"`` in an
    invoke.yaml would fail; left out, a map or a string may be given, and
    `resolve` starts from the same defaults either way.
    """
    return {name: value for name, value in defaults().items() if not isinstance(value, dict)}


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


def resolve(
    config: Mapping[str, Any] | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Settings:
    """Merge the five levels and validate the result.

    ``config`` is the ``securebuild`` mapping of the invoke config (defaults and
    config files already merged by invoke); ``flags`` holds task flags, where
    ``None`` means "not given". ``environ`` defaults to ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env_values = _prefixed(environ, "the environment")

    merged: dict[str, tuple[Any, str]] = {
        name: (value, "default") for name, value in defaults().items()
    }
    for name, value in (config or {}).items():
        _check_known(name, f"invoke config ({NAMESPACE}.{name})")
        merged[name] = (value, f"invoke config {NAMESPACE}.{name}")

    # The .env file's own location may come from any level but the .env itself.
    # The first level that sets it wins, even with "" (read no .env file).
    typed = next((level["env_file"] for level in (flags, env_values) if "env_file" in level), None)
    env_file = merged["env_file"][0] if typed is None else typed
    # Read against the project's folder wherever it is named (the context check
    # looks for it there too); one the user typed must exist, the default may not.
    for name, value in _read_env_file(env_file, cwd, required=typed is not None).items():
        if name == "env_file":
            raise SettingsError(
                f"{ENV_PREFIX}ENV_FILE in {env_file} cannot move the .env file it is in",
                hint=f"set {ENV_PREFIX}ENV_FILE in the environment, or {NAMESPACE}.env_file"
                " in the invoke config",
            )
        merged[name] = (value, f"{ENV_PREFIX}{name.upper()} in {env_file}")
    for name, value in env_values.items():
        merged[name] = (value, f"environment variable {ENV_PREFIX}{name.upper()}")
    for name, value in flags.items():
        _check_known(name, f"flag --{name.replace('_', '-')}")
        merged[name] = (value, f"flag --{name.replace('_', '-')}")

    values = {name: _convert(name, value, origin) for name, (value, origin) in merged.items()}
    _absolute_paths(values, {name: origin for name, (_, origin) in merged.items()}, cwd)
    settings = Settings(**values)
    _validate(settings, {name: origin for name, (_, origin) in merged.items()})
    return settings


def _absolute_paths(
    values: dict[str, Any], origins: Mapping[str, str], cwd: str | os.PathLike[str] | None
) -> None:
    """Make relative path settings absolute, so that every reader of one reads
    the same file: a flag's or an environment variable's against the folder
    the command runs in (as a shell user means it), a file's or a default
    against the project's folder (``cwd``; under `inv`, that of its tasks.py).
    ``~`` is expanded first; a ``docker`` without a slash is a command looked
    up on PATH."""
    project = Path(cwd) if cwd is not None else Path.cwd()

    def absolute(value: str, origin: str) -> str:
        if value.startswith("~"):
            try:
                value = str(Path(value).expanduser())
            except RuntimeError:  # no such user: `_validate` says so in one line
                return value
        if not value or Path(value).is_absolute():
            return value
        typed = origin.startswith(("flag ", "environment variable "))
        return str((Path.cwd() if typed else project) / value)

    for name in PATH_SETTINGS:
        value = values[name]
        if (
            name == "docker"
            and not value.startswith("~")
            and "/" not in value
            and os.sep not in value
        ):
            continue
        values[name] = absolute(value, origins[name])
    values["secrets"] = {
        sid: absolute(path, origins["secrets"]) for sid, path in values["secrets"].items()
    }


def _check_known(name: str, origin: str) -> None:
    if name not in HELP:
        raise SettingsError(
            f"unknown setting {name!r} from {origin}",
            hint=f"known settings: {', '.join(sorted(HELP))}",
        )


def _prefixed(source: Mapping[str, str | None], origin: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in source.items():
        if not key.upper().startswith(ENV_PREFIX) or value is None:
            continue
        if origin == "the environment" and key.upper().startswith(INVOKE_ENV_PREFIX + "_"):
            continue  # invoke's own, under the `securebuild` program
        if key.upper() == INDEX_TOKEN_ENV:
            if origin != "the environment":
                # A token in a project file is what index_url's keyring entry avoids.
                raise SettingsError(
                    f"{INDEX_TOKEN_ENV} is set in {origin}, a file in the project",
                    hint="store the token with `inv store-token`, or export it in the"
                    " environment of the build only",
                )
            continue
        name = key[len(ENV_PREFIX) :].lower()
        _check_known(name, f"{key} in {origin}")
        found[name] = value
    return found


def _read_env_file(
    env_file: Any, cwd: str | os.PathLike[str] | None, required: bool = False
) -> dict[str, str]:
    """Read ``SECUREBUILD_*`` values of a .env file; a missing file is no error
    unless ``required`` (the user named it)."""
    if not isinstance(env_file, str) or not env_file:
        return {}
    try:
        path = Path(env_file).expanduser()
    except RuntimeError:  # "~name/..." where no user has that name
        raise SettingsError(
            f"the .env file {_show(env_file)} is in the home of a user who does not exist",
            hint=f"fix {ENV_PREFIX}ENV_FILE or {NAMESPACE}.env_file",
        ) from None
    if not path.is_absolute():
        path = Path(cwd or Path.cwd()) / path
    shown = str(path) if str(path).isprintable() else repr(str(path))  # stays one line
    try:
        if path.is_fifo() or path.is_char_device() or path.is_socket():
            # A read would wait for a writer that may never come.
            raise SettingsError(
                f"the .env file {shown} is not a regular file (a pipe, device or socket)",
                hint="give a file, or set SECUREBUILD_ENV_FILE to one",
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise SettingsError(
                f"the .env file {shown} does not exist",
                hint=f"fix {ENV_PREFIX}ENV_FILE, or leave it unset",
            ) from None
        return {}
    except (OSError, ValueError) as exc:  # ValueError: undecodable, or a NUL in the path
        raise SettingsError(
            f"cannot read the .env file {shown}: {exc.__class__.__name__}",
            hint="fix its permissions or encoding (UTF-8), or set SECUREBUILD_ENV_FILE",
        ) from None

    from dotenv.main import DotEnv
    from dotenv.parser import parse_stream

    # python-dotenv only warns about lines it cannot parse; a build with a
    # half-read .env is worse than a clear stop, so check first.
    for binding in parse_stream(io.StringIO(text)):
        # dotenv counts from the end of the previous entry; skip the blank lines.
        raw = binding.original.string
        line = binding.original.line + raw[: len(raw) - len(raw.lstrip())].count("\n")
        if binding.error:
            raise SettingsError(
                f"cannot parse {path} line {line}",
                hint="write KEY=VALUE, quote values with spaces or '#'",
            )
        if binding.value is None and (binding.key or "").upper().startswith(ENV_PREFIX):
            # A bare name would erase what an earlier line set.
            raise SettingsError(
                f"{path} line {line} names {binding.key} without a value",
                hint=f"write {binding.key}=VALUE, or remove the line",
            )
    # interpolate=False: values are taken literally, "$(...)" and "${X}" included.
    # From the text already read: the file is read once.
    values = DotEnv(None, stream=io.StringIO(text), interpolate=False).dict()
    return _prefixed(values, str(path))


def _convert(name: str, value: Any, origin: str) -> Any:
    expected = type(getattr(Settings(), name))
    try:
        if expected is bool:
            return _to_bool(value)
        if expected is int:
            # Not a bool, and not a float with a fraction, which int() would cut off.
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if expected is dict:
            return _to_mapping(value)
        if not isinstance(value, str):
            raise ValueError
        return value.strip()
    # int() raises TypeError for None, lists, dicts, and OverflowError for YAML's .inf.
    except (TypeError, ValueError, OverflowError):
        kind = {
            bool: "true or false",
            int: "a whole number",
            dict: "NAME=VALUE pairs (a VALUE starting with '=' only in the invoke config)",
        }.get(expected, "text")
        raise SettingsError(
            f"setting {name} from {origin} must be {kind}"
            # Pair lists may hold a mistyped secret ("TOKEN:ghp_..."): never echo them.
            + ("" if expected is dict else f", not {_show(value)}"),
            hint=f"{name}: {HELP[name]}",
        ) from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(value)


def _to_mapping(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        # YAML's null, a list or a map is no value: "None" would reach the build.
        if any(v is None or isinstance(v, (Mapping, list, tuple)) for v in value.values()):
            raise ValueError(value)
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    elif isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    else:
        raise ValueError(value)
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, val = item.partition("=")
        # A token's "=" or "==" padding, split off, would make the token a name
        # (on docker's command line): a value starting with "=", or an empty one
        # after a name that reads like a token rather than a variable. (A
        # mapping in the invoke config can give either.)
        if not sep or not key.strip() or val.startswith("="):
            raise ValueError(item)
        if not val.strip() and _TOKEN_LIKE.match(key.strip()):
            raise ValueError(item)
        pairs[key.strip()] = val.strip()
    return pairs


#: Settings that name a file or folder ("~/" allowed).
PATH_SETTINGS = (
    "dockerfile",
    "context",
    "docker",
    "agent_socket",
    "key_file",
    "known_hosts",
    "ca_bundle",
    "pip_config",
    "uv_config",
    "netrc",
)


def is_image_ref(value: str) -> bool:
    """Whether ``value`` is a docker image reference (name, tag and/or digest)."""
    return bool(_IMAGE_REF.match(value))


def _validate(s: Settings, origins: Mapping[str, str]) -> None:
    def bad(name: str, why: str, hint: str = "") -> SettingsError:
        return SettingsError(
            f"setting {name} from {origins[name]} {why}", hint=hint or f"{name}: {HELP[name]}"
        )

    choices: dict[str, tuple[str, ...]] = {
        "key_source": KEY_SOURCES,
        "builder": BUILDERS,
        "progress": PROGRESS,
        "installer": INSTALLERS,
        "passphrase_source": PASSPHRASE_SOURCES,
        "index_token_source": INDEX_TOKEN_SOURCES,
    }
    for name, allowed in choices.items():
        if getattr(s, name) not in allowed:
            raise bad(name, f"is {getattr(s, name)!r}", f"use one of: {', '.join(allowed)}")

    patterns: list[tuple[str, re.Pattern[str], bool, str]] = [
        ("image", _IMAGE_NAME, False, "lowercase letters, digits, '.', '_', '-' and '/'"),
        ("tag", _TAG, False, "up to 128 letters, digits, '_', '.' and '-'"),
        ("base_image", _IMAGE_REF, True, "an image reference such as python:3.12-slim"),
        ("network", _NETWORK, True, "a docker network name such as host or none"),
        ("platform", _PLATFORM, True, "os/arch[/variant], e.g. linux/amd64"),
        ("target", _BUILD_ARG_STAGE, True, "the name of a stage in the Dockerfile"),
        ("buildx_builder", _NETWORK, True, "a builder name from `docker buildx ls`"),
    ]
    for name, pattern, may_be_empty, form in patterns:
        value = getattr(s, name)
        if (value or not may_be_empty) and not pattern.match(value):
            raise bad(name, f"is not a valid {name}: {_show(value)}", f"use {form}")

    if s.buildx_builder and s.builder == "classic":
        raise bad(
            "buildx_builder",
            f"names a buildx builder ({s.buildx_builder}) but builder is 'classic'",
            "set builder to auto or buildx, or leave buildx_builder empty",
        )
    if "," in s.platform:
        raise bad(
            "platform",
            f"names several platforms ({s.platform}); a build loaded into the local engine has one",
            "build one platform per run, e.g. linux/amd64",
        )
    if not 0 < s.key_lifetime < 2**31:
        # ssh-add -t takes a 32-bit count of seconds; past it, it refuses the key late.
        raise bad("key_lifetime", f"must be from 1 to {2**31 - 1} seconds, not {s.key_lifetime}")
    if not s.keyring_service or not s.keyring_key:
        name = "keyring_service" if not s.keyring_service else "keyring_key"
        raise bad(name, "must not be empty")
    if s.key_source == "file" and not s.key_file:
        raise bad(
            "key_source",
            "is 'file' but no key_file is set",
            "set SECUREBUILD_KEY_FILE=PATH or pass --key-file PATH",
        )

    paths = [(name, getattr(s, name)) for name in PATH_SETTINGS]
    for name, value in paths + [("secrets", value) for value in s.secrets.values()]:
        if value.startswith("~"):
            try:
                Path(value).expanduser()
            except RuntimeError:  # "~name/..." where no user has that name
                raise bad(
                    name,
                    f"is in the home folder of a user who does not exist: {_show(value)}",
                    "write ~/ for your own home folder, or give the full path",
                ) from None
    _validate_index(s, bad)
    for name in ("cache_from", "cache_to"):
        _validate_cache(name, getattr(s, name), bad)
    for arg, value in s.build_args.items():
        if _URL_CREDENTIALS.search(value):
            raise bad(
                "build_args",
                f"has a URL with credentials in {arg!r}; build args are stored in the image",
                "put the index and its token in a pip.conf given as securebuild.pip_config",
            )
        if not _BUILD_ARG.match(arg):
            raise bad(
                "build_args",
                # Not echoed: a token split at its "=" padding ends up a "name".
                "has a build arg name that is none (not shown: it may be a value typed in"
                " its place)",
                "use letters, digits and '_', not starting with a digit",
            )
        if _SECRET_NAME.search(arg):
            raise bad(
                "build_args",
                f"has {arg!r}, which looks like a secret; build args are stored in the image",
                "pass it as a secret instead: secrets=ID=PATH, and read /run/secrets/ID",
            )
    if s.build_args.get("COMPILE_BYTECODE", "1") not in ("1", ""):
        # The template compiles whenever it is set: 0 or false would turn it on.
        raise bad(
            "build_args",
            f"has COMPILE_BYTECODE={_show(s.build_args['COMPILE_BYTECODE'])}, which the"
            " template reads as set",
            "give COMPILE_BYTECODE=1 to precompile .pyc files, or leave it out",
        )
    check_relative(s.requirements, "requirements", origins)
    check_relative(s.lock_file, "lock_file", origins)
    if s.lock_input:
        check_relative(s.lock_input, "lock_input", origins)
    if s.wheelhouse:
        check_relative(s.wheelhouse, "wheelhouse", origins)
    for secret_id, path in s.secrets.items():
        if secret_id in RESERVED_SECRET_IDS:
            raise bad(
                "secrets",
                f"has the secret id {secret_id!r}, which the template uses itself",
                f"use another id, none of {RESERVED_SECRET_IDS}",
            )
        if not _SECRET_ID.match(secret_id):
            raise bad(
                "secrets",
                "has a secret id that is none (not shown: it may be a value typed in its place)",
                "use letters, digits, '.', '_' or '-'",
            )
        if not path:
            raise bad("secrets", f"gives no path for secret {secret_id!r}")


def _validate_index(s: Settings, bad: Any) -> None:
    """An index URL pip, uv and a .netrc line can all use, with no credentials in it."""
    if not s.keyring_token:
        raise bad("keyring_token", "must not be empty")
    if not s.index_url:
        return
    from urllib.parse import urlsplit

    # A token with a "/" in it, or a URL missing its "//", hides its user info
    # from URL parsers: an "@" followed by what looks like a host is user info.
    # An "@" before a plain word is a path's own (Azure Artifacts names a feed
    # view so: feed@Release); an index URL, unlike a git URL, has no "@ref".
    if (
        ("@" in s.index_url and "://" not in s.index_url)
        or _AT_HOST.search(s.index_url)
        or _URL_CREDENTIALS.search(s.index_url)
        or QUERY_SECRET.search(s.index_url)
    ):
        raise bad(
            "index_url",
            "has credentials in it (user info, or a token in its query); the URL reaches the"
            " build as a non-secret build arg",
            f"give the URL alone and the token with `inv store-token` or {INDEX_TOKEN_ENV}",
        )
    try:
        parts = urlsplit(s.index_url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        usable = False
    if not usable or any(c.isspace() for c in s.index_url):
        raise bad(
            "index_url",
            f"is not an http(s) URL with a host: {_show(s.index_url)}",
            "use e.g. https://pypi.example.com/simple/",
        )
    user = s.index_username
    if not user or any(c.isspace() or ord(c) < 32 for c in user) or user.startswith("#"):
        raise bad("index_username", f"must be one word, not {_show(user)}")


#: BuildKit's cache backends; each is given to buildx as one CSV record.
CACHE_TYPES = ("local", "registry", "inline", "gha", "s3", "azblob")


def cache_fields(spec: str) -> list[tuple[str, str]]:
    """The ``key=value`` fields of a cache spec, read as docker reads it (one CSV record)."""
    import csv

    if not spec:
        return []
    if any(c in spec for c in "\r\n\0"):
        raise ValueError("a line break or NUL")
    try:
        rows = list(csv.reader([spec], strict=True))
    except csv.Error as exc:
        raise ValueError(str(exc)) from None
    pairs: list[tuple[str, str]] = []
    for number, item in enumerate(rows[0] if rows else [], start=1):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # Not echoed: a stray field may be a credential pasted in.
            raise ValueError(f"field {number} is not key=value")
        pairs.append((key.strip().lower(), value))
    return pairs


def _validate_cache(name: str, spec: str, bad: Any) -> None:
    """A cache spec buildx accepts, with no credential in it (argv is public)."""
    if not spec:
        return
    example = {
        "cache_from": "type=local,src=.buildcache",
        "cache_to": "type=local,dest=.buildcache,mode=max",
    }[name]
    try:
        pairs = cache_fields(spec)
    except ValueError as exc:
        raise bad(name, f"cannot be read as key=value fields ({exc})", f"e.g. {example}") from None
    for key, value in pairs:
        if _SECRET_NAME.search(key) or _URL_CREDENTIALS.search(value):
            # Never echo the value: it is probably the credential itself.
            raise bad(
                name,
                f"has a credential in it ({key}=...); docker's command line is visible to every"
                " local user",
                "leave credentials to the environment the cache backend reads (e.g."
                " AWS_ACCESS_KEY_ID, ACTIONS_RUNTIME_TOKEN) or to `docker login`",
            )
    fields = dict(pairs)
    kind = fields.get("type", "")
    if kind not in CACHE_TYPES or [key for key, _ in pairs].count("type") != 1:
        raise bad(
            name,
            f"needs one type= of {', '.join(CACHE_TYPES)}, not {_show(kind) if kind else 'none'}",
            f"use e.g. {example}",
        )
    path_key = "src" if name == "cache_from" else "dest"
    if kind == "local" and not fields.get(path_key):
        raise bad(name, f"is a local cache with no {path_key}= directory", f"use e.g. {example}")


_BUILD_ARG_STAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_relative(value: str, name: str, origins: Mapping[str, str]) -> None:
    """Refuse a path that must stay inside the build context but does not."""
    path = Path(value)
    # No parts: "." or "./", the context itself.
    if not value or path.is_absolute() or ".." in path.parts or not path.parts:
        raise SettingsError(
            f"setting {name} from {origins[name]} must be a path inside the build context,"
            f" not {_show(value)}",
            hint=f"{name}: {HELP[name]}",
        )
    wildcard = next((c for c in "*?[" if c in value), None)
    if wildcard is not None:
        # The template copies it by name (COPY ${REQUIREMENTS}), and COPY takes
        # "reqs[prod].txt" as a pattern: it would copy another file, or none.
        raise SettingsError(
            f"setting {name} from {origins[name]} has {wildcard!r} in it, which the build's"
            f" COPY reads as a wildcard: {_show(value)}",
            hint="rename the file or folder without *, ? or [",
        )


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """Return (name, value, help) rows for display; values are never secrets."""
    rows = []
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, dict):
            shown = ",".join(f"{k}={v}" for k, v in value.items())
        else:
            shown = str(value)
        rows.append((f.name, shown, HELP[f.name]))
    return rows
