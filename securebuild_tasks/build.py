"""Running BuildKit jobs: settings, then key source, then engine, in that order.

A job is planned first (`plan_build`, `plan_lock`, `plan_vendor`): paths,
requirements, pinned host keys and secrets are resolved and checked without
touching Docker or any key. `execute` then runs the plan with a key forwarded
for exactly the duration of the build, and the task-level functions
(`build_image`, `lock`, `vendor`) turn the result into an image, a lock file or
a wheelhouse. Tasks call these; tests call them directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

from . import lockfile
from .agent import private_workdir, reap_stale_workdirs, write_private
from .engine import (
    CommandBuilder,
    Engine,
    EngineProbe,
    image_user,
    inspect_image,
    ping,
    run_streaming,
)
from .errors import (
    BuildError,
    EngineError,
    HostKeyError,
    KeySourceError,
    RequirementsError,
    SecurebuildError,
    SettingsError,
    read_bytes,
)
from .hostkeys import default_known_hosts, explain_ssh_failure, select_known_hosts
from .index import IndexCredentials, adopt_env_token, index_credentials, index_netloc
from .keys import ForwardedKey, KeySource, NoKeySource, choose_key_source
from .requirements import (
    Requirements,
    check_hash_mode,
    file_options,
    parse_requirements,
    read_requirements,
    refuse_options_uv_ignores,
)
from .settings import Settings, cache_fields, is_image_ref

TEMPLATE_NAME = "Dockerfile.template"
#: Run inside the lock step (see `build_requires`); read, never imported, here.
BUILD_REQUIRES_PROGRAM = Path(__file__).with_name("build_requires.py")
#: An SSH mount, its options in any order (--mount=id=x,type=ssh).
_SSH_MOUNT = re.compile(r"--mount=(?:\S*,)?type=ssh\b")
#: The template's first line, which `init` keeps in the Dockerfile it writes.
TEMPLATE_MARK = "# Dockerfile template of securebuild-tasks."
PROJECT_LABEL = "io.securebuild.project"


def template_path() -> Path:
    """The built-in Dockerfile template (inside the wheel, or the repository's)."""
    packaged = resources.files("securebuild_tasks") / TEMPLATE_NAME
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / TEMPLATE_NAME


@dataclass(frozen=True)
class BuildPlan:
    """Everything a BuildKit job needs, resolved and checked, with no secret in it."""

    settings: Settings
    context: Path
    dockerfile: Path
    requirements: Requirements
    build_args: dict[str, str]
    secret_files: dict[str, Path]
    #: Secrets made for this job (known_hosts, uv.toml), written into the
    #: private work directory only while the job runs.
    generated_secrets: dict[str, str] = field(default_factory=dict)
    target: str = ""
    output: Path | None = None
    tag: bool = True
    forward_key: bool = True
    network: str = ""
    #: Where index_url's token comes from; it is read, and its .netrc written,
    #: only in `execute`, after the engine answered.
    index: IndexCredentials | None = None
    #: buildx --cache-from / --cache-to values, local directories made absolute.
    cache_from: str = ""
    cache_to: str = ""
    #: Said before the build starts (``securebuild: warning: ...``); nothing stops.
    warnings: tuple[str, ...] = ()

    @property
    def needs_key(self) -> bool:
        """Whether the build needs the user's key: its requirements fetch over SSH,
        or a Dockerfile of the user's own (not the template, nor one `init` made
        from it) has SSH steps whose use the tool cannot see."""
        if self.requirements.ssh_hosts:
            return True
        text = dockerfile_text(self.dockerfile)
        steps = len(_SSH_MOUNT.findall(text))
        if TEMPLATE_MARK not in text:
            return steps > 0
        # init's Dockerfile with SSH steps of the user's own added to it.
        return steps > len(_SSH_MOUNT.findall(dockerfile_text(template_path())))


def key_needed(plan: BuildPlan) -> bool:
    """Whether the build of ``plan`` loads a key of the user's: it forwards one
    (no wheelhouse) and needs it, or has no key-less way to forward an agent."""
    return plan.forward_key and (plan.needs_key or not NoKeySource(plan.settings).viable()[0])


@dataclass(frozen=True)
class BuildResult:
    """What a finished image build produced."""

    image: str
    image_id: str
    size: int
    key_fingerprint: str
    key_source: str
    seconds: float
    offline: bool = False


def existing_file(value: str, base: Path, name: str, what: str) -> Path:
    """The file a path setting names, relative to ``base``; `SettingsError` if missing."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise SettingsError(
            f"{what} {path} does not exist (setting {name})",
            hint=f"create it or fix securebuild.{name}",
        )
    return path


def resolve_context(settings: Settings, cwd: Path) -> Path:
    """The build context directory; `SettingsError` when it is not one."""
    context = Path(settings.context).expanduser()
    context = context if context.is_absolute() else cwd / context
    if not context.is_dir():
        raise SettingsError(
            f"build context {context} is not a directory", hint="fix securebuild.context"
        )
    return context


def _secrets(
    settings: Settings, cwd: Path, index: IndexCredentials | None = None
) -> dict[str, Path]:
    """The user's secret files; with index credentials the .netrc is made per run."""
    found: dict[str, Path] = {}
    if settings.ca_bundle:
        found["ca_bundle"] = existing_file(settings.ca_bundle, cwd, "ca_bundle", "CA bundle")
    if settings.pip_config:
        found["pip_config"] = existing_file(settings.pip_config, cwd, "pip_config", "pip config")
    if settings.uv_config:
        found["uv_config"] = existing_file(settings.uv_config, cwd, "uv_config", "uv config")
    if settings.netrc:
        found["netrc"] = existing_file(settings.netrc, cwd, "netrc", ".netrc")
        if index is not None:
            del found["netrc"]  # merged into the .netrc `execute` writes
    for secret_id, value in settings.secrets.items():
        found[secret_id] = existing_file(value, cwd, "secrets", f"secret {secret_id}")
    return found


def pinned_hosts(settings: Settings, requirements: Requirements) -> str:
    """The known_hosts lines for the requirements' git hosts; `HostKeyError` if unpinned."""
    known_hosts = (
        Path(settings.known_hosts).expanduser() if settings.known_hosts else default_known_hosts()
    )
    return select_known_hosts(requirements.ssh_hosts, known_hosts)


def dockerfile_text(dockerfile: Path) -> str:
    """A Dockerfile's text. Docker reads any bytes (a comment in Latin-1 builds
    fine), and the instructions the tool looks for are ASCII, so bytes that are
    not UTF-8 are read as replacement characters rather than refused."""
    data = read_bytes(dockerfile, "Dockerfile", hint="check the file and securebuild.dockerfile")
    return data.decode("utf-8", errors="replace")


def _declared_args(dockerfile: Path) -> set[str]:
    text = dockerfile_text(dockerfile)
    return set(re.findall(r"(?m)^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text))


_FROM = re.compile(r"(?i)^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$")
_ARG_PAIRS = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((=(?:\"[^\"]*\"|'[^']*'|\S*))?)")
# $VAR, ${VAR}, ${VAR:-default} and ${VAR-default}, as Dockerfiles expand them.
_VARIABLE = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)
_HEREDOC = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")


def _instructions(text: str) -> Iterator[str]:
    """A Dockerfile's instructions: continued lines joined, comments and heredoc
    bodies left out."""
    pending, heredoc = "", ""
    for line in text.splitlines():
        if heredoc:
            heredoc = "" if line.strip() == heredoc else heredoc
            continue
        if line.lstrip().startswith("#") or (pending and not line.strip()):
            continue  # a comment, or an empty line inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        instruction, pending = pending + line, ""
        heredocs = re.match(r"(?i)\s*(RUN|COPY|ADD)\s", instruction)
        if heredocs and (found := _HEREDOC.search(instruction)):
            heredoc = found.group(1)
        yield instruction


def dockerfile_base_image(dockerfile: Path, args: Mapping[str, str], target: str = "") -> str:
    """The image ``target`` (default: the last stage) of ``dockerfile`` starts from,
    following stage names and the global ARGs (``args`` over their defaults), as
    BuildKit would; "" when that is ``scratch`` or cannot be told."""
    values: dict[str, str] = {}
    stages: dict[str, str] = {}
    last = ""
    seen_from = False

    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        value = values.get(name, "")
        if match.group(2) == ":-":
            return value or match.group(3)
        if match.group(2) == "-":
            return value if name in values else match.group(3)
        return value

    for line in _instructions(dockerfile_text(dockerfile)):
        if not seen_from and re.match(r"(?i)\s*ARG\s", line):
            # One or more NAME[=default]; a default may use the ARGs before it.
            for name, default, _ in _ARG_PAIRS.findall(line.strip()[3:]):
                if name in args:
                    values[name] = args[name]
                elif default:  # "ARG NAME" alone leaves NAME unset
                    values[name] = _VARIABLE.sub(expand, default[1:].strip("\"'"))
        elif found := _FROM.match(line):
            seen_from = True
            image = _VARIABLE.sub(expand, found[1])
            last = image
            if found[2]:
                stages[found[2].lower()] = image
    image = stages.get(target.lower(), "") if target else last
    for _ in range(len(stages) + 1):  # a stage built on a stage: follow the names
        if image.lower() not in stages:
            break
        image = stages[image.lower()]
    unresolved = image.lower() in stages or image.lower() == "scratch"  # a loop, or no image
    return image if is_image_ref(image) and not unresolved else ""


def base_image(settings: Settings, cwd: Path, context: Path) -> str:
    """The image the project's runtime starts from: the project's Dockerfile (the
    setting's, the context's or the built-in template) read with the build's
    args, the base_image setting over its ``ARG BASE_IMAGE``."""
    args = dict(settings.build_args)
    if settings.base_image:
        args["BASE_IMAGE"] = settings.base_image
    dockerfile = choose_dockerfile(settings, cwd, context)
    return dockerfile_base_image(dockerfile, args, settings.target)


def wheel_base_image(settings: Settings, cwd: Path, context: Path) -> str:
    """The image `lock` and `vendor` build on (they run the template's stages,
    which need a shell and Python): the base_image setting, else the project's
    Dockerfile's when it is the template's or one `init` wrote from it; "" (the
    template's own default) for a Dockerfile of the user's own, whose last stage
    may have neither."""
    if settings.base_image:
        return settings.base_image
    dockerfile = choose_dockerfile(settings, cwd, context)
    if TEMPLATE_MARK not in dockerfile_text(dockerfile):
        return ""
    # The template's wheel stages build on its `base` stage, whatever follows.
    return dockerfile_base_image(dockerfile, dict(settings.build_args), "base")


def _build_args(dockerfile: Path, settings: Settings, **wanted: str) -> dict[str, str]:
    """The tool's own build args that ``dockerfile`` declares (an empty BASE_IMAGE
    leaves the Dockerfile's own default), then the user's."""
    declared = _declared_args(dockerfile)
    if not wanted.get("BASE_IMAGE"):
        wanted.pop("BASE_IMAGE", None)
    elif "BASE_IMAGE" not in declared:
        # lock and vendor would use it (they run the template), the build not.
        raise SettingsError(
            f"base_image is set ({wanted['BASE_IMAGE']}), but {dockerfile} declares no"
            " ARG BASE_IMAGE, so the build would not use it",
            hint="declare `ARG BASE_IMAGE` before its first FROM and start from"
            " ${BASE_IMAGE}, or unset base_image",
        )
    args = {name: value for name, value in wanted.items() if name in declared}
    args.update(settings.build_args)
    return args


def _file_index_options(requirements: Requirements) -> list[str]:
    """The file's options that set its index, as written (``-i``, ``--index``, ...)."""
    return [
        option.written
        for option in file_options(requirements)
        if option.name == "--index-url" and option.value.strip()
    ]


def _index_arg(
    dockerfile: Path, index: IndexCredentials | None, requirements: Requirements
) -> dict[str, str]:
    """``INDEX_URL`` for a Dockerfile that can use it; refuse one that cannot.

    A requirements file that names its own index as well is refused: pip lets
    the file's ``--index-url`` win over the setting, uv the other way round,
    so the two installers would fetch from different places.
    """
    if index is None:
        return {}
    named = _file_index_options(requirements)
    if named:
        raise SettingsError(
            f"index_url is set and {requirements.path.name} names an index too"
            f" ({named[0]}): pip and uv disagree on which one wins",
            hint="keep one: remove the file's --index-url, or unset securebuild.index_url",
        )
    if "INDEX_URL" not in _declared_args(dockerfile):
        raise SettingsError(
            f"index_url is set but {dockerfile} declares no ARG INDEX_URL, so pip would not use it",
            hint="declare `ARG INDEX_URL` and export it as PIP_INDEX_URL in the pip step, or use"
            " the built-in template",
        )
    return {"INDEX_URL": index.url}


def _sensitive_files(settings: Settings, cwd: Path) -> dict[str, Path]:
    """Files that must never be sent to the builder as part of the context."""
    named = {
        "key_file": settings.key_file,
        "pip_config": settings.pip_config,
        "uv_config": settings.uv_config,
        "netrc": settings.netrc,
        "env_file": settings.env_file,
        **{f"secrets ({sid})": path for sid, path in settings.secrets.items()},
    }
    found: dict[str, Path] = {}
    for name, value in named.items():
        if value:
            path = Path(value).expanduser()
            found[name] = path if path.is_absolute() else cwd / path
    found.update(_cache_dirs(settings, cwd))
    return found


def _cache_dir(settings: Settings, cwd: Path, name: str) -> Path | None:
    """The local directory of cache setting ``name`` (its src or dest), if any."""
    fields = dict(cache_fields(getattr(settings, name)))
    value = fields.get("src" if name == "cache_from" else "dest")
    if fields.get("type") != "local" or not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else cwd / path


def _cache_dirs(settings: Settings, cwd: Path) -> dict[str, Path]:
    """Local cache directories: they hold every stage's layers, private code included."""
    found = {name: _cache_dir(settings, cwd, name) for name in ("cache_from", "cache_to")}
    return {name: path for name, path in found.items() if path is not None}


def _cache_option(settings: Settings, cwd: Path, name: str) -> str:
    """The buildx value of cache setting ``name``, its local directory made absolute."""
    local = _cache_dir(settings, cwd, name)
    return csv_option(
        *(
            f"{key}={local if local is not None and key in ('src', 'dest') else value}"
            for key, value in cache_fields(getattr(settings, name))
        )
    )


def ignore_file(context: Path, dockerfile: Path | None) -> Path:
    """The ignore file BuildKit applies: ``<Dockerfile>.dockerignore`` beside the
    Dockerfile when there is one, else the context's ``.dockerignore``."""
    if dockerfile is not None:
        specific = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if specific.is_file():
            return specific
    return context / ".dockerignore"


def check_context(
    settings: Settings, cwd: Path, context: Path, dockerfile: Path | None = None
) -> None:
    """Refuse a build whose context would carry a key, token file or .env into it.

    The ignore file BuildKit will apply (see `ignore_file`) is read with the
    docker SDK's own matcher, so what counts as excluded is what Docker itself
    excludes.
    """
    root = context.resolve()
    inside: dict[str, tuple[Path, Path]] = {}
    # A cache directory counts before it exists: the export would land in the context.
    caches = _cache_dirs(settings, cwd)
    for name, path in _sensitive_files(settings, cwd).items():
        if not path.exists() and name not in caches:
            continue
        try:
            inside[name] = (path, path.resolve().relative_to(root))
        except ValueError:
            continue  # outside the context: never sent
    if not inside:
        return  # the common case, and no docker SDK import for it
    ignore = ignore_file(context, dockerfile)
    patterns = _ignore_patterns(ignore)
    for name, (path, relative) in inside.items():
        if not _ignored(patterns, relative.as_posix(), ignore):
            raise SettingsError(
                f"{name} {path} is inside the build context and not in {ignore.name}, so it"
                " would be sent to the builder and could be copied into the image",
                hint=f"add `{relative.as_posix()}` to {ignore}, or keep the file outside {context}",
            )


def _ignore_patterns(ignore: Path) -> list[str]:
    if not ignore.is_file():
        return []
    lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(patterns: list[str], relative: str, ignore: Path) -> bool:
    """Whether BuildKit leaves ``relative`` (slash-separated) out of the context,
    by the ``patterns`` of the ignore file ``ignore``.

    Decided by the docker SDK's own matcher, so what counts as excluded is what
    Docker itself excludes, except where the answer is certain without it (the
    SDK's import takes longer than a cached rebuild): no pattern could match
    the path or a folder above it, or a plain-name pattern names one of them
    and every exception ("!...") is a plain name that names none of them.
    """
    # docker-py compares without case; so does this.
    parts = relative.lower().split("/")
    above = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    maybe = {True: False, False: False}  # whether an exception / a pattern may match
    surely = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = os.path.normpath(pattern.removeprefix("!").strip().lstrip("/")).lower()
        # "[...]", "\\" escapes and ".." : only the SDK reads those as it does.
        involved = any(c in body for c in "[]\\") or body == "." or body.startswith("..")
        plain = not involved and not any(c in body for c in "*?")
        if involved or any(_loose(body).fullmatch(path) for path in above):
            maybe[negated] = True
        surely = surely or (not negated and plain and body in above)
    if not maybe[False]:
        return False
    if surely and not maybe[True]:
        return True
    from docker.utils.build import PatternMatcher

    try:
        # docker-py's regexes of "[[:alpha:]]" draw a FutureWarning from re: not
        # the user's to read.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # types-docker says PathLike, but docker-py matches the slash-separated string.
            return bool(PatternMatcher(patterns).matches(relative))  # type: ignore[arg-type]
    except re.error as exc:
        raise SettingsError(
            f"{ignore} has a pattern Docker cannot read ({exc.msg})",
            hint="fix the pattern; `[...]` ranges go from low to high, as in [a-z]",
        ) from None


def _loose(pattern: str) -> re.Pattern[str]:
    """A regex matching at least every path the ignore ``pattern`` matches (its "*"
    crosses "/", "?" matches "/" too, "**/" stands for any folders or none). Only
    used for patterns without "[", "]" or "\\" (see `_ignored`)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        c = pattern[i]
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out))


def _refuse_ignored_inputs(
    context: Path, dockerfile: Path, args: dict[str, str], *names: str
) -> None:
    """Refuse a build whose ignore file leaves out a file the template copies in
    from the build args ``names`` (an allow-list `.dockerignore`, `*` then
    `!app`, is a common way to do that): BuildKit would only say
    `"/requirements.txt" not found`. A Dockerfile that declares none of them
    copies what it likes, and is left to say so itself."""
    wanted = [
        f"{args[name]}/{lockfile.HASHES}" if name == "WHEELHOUSE" else args[name]
        for name in names
        if args.get(name)
    ]
    ignore = ignore_file(context, dockerfile)
    patterns = _ignore_patterns(ignore)
    for relative in (Path(w).as_posix() for w in wanted):
        if _ignored(patterns, relative, ignore):
            raise SettingsError(
                f"{ignore.name} leaves {relative} out of the build context, and the build"
                " copies it in",
                hint=f"add `!{relative}` to {ignore}",
            )


def requirements_for(settings: Settings, context: Path) -> tuple[Requirements, str, bool]:
    """The lock when there is one (checked), else the requirements file; its path
    relative to the context; and whether it is the lock."""
    lock = context / settings.lock_file
    if lock.is_file():
        requirements = lockfile.check(lock, context)
        _lock_serves(settings, context, lock)
        return requirements, settings.lock_file, True
    requirements = read_requirements(context / settings.requirements)
    check_hash_mode(requirements)
    return requirements, settings.requirements, False


def _lock_serves(settings: Settings, context: Path, lock: Path) -> None:
    """Refuse a requirements setting that the lock, which builds install instead,
    was not made from: a file the user named would be silently left out. (The
    default name says nothing: a lock of requirements.in serves it.)"""
    source = lockfile.source_of(lock)
    named = context / settings.requirements
    for served in (context / Settings().requirements, context / source, lock):
        if named.resolve() == served.resolve():
            return
        # The same file by another name (a case-insensitive file system).
        with contextlib.suppress(OSError):
            if os.path.samefile(named, served):
                return
    named_file = shlex.quote(settings.requirements)
    raise RequirementsError(
        f"requirements is {settings.requirements}, but builds install {settings.lock_file}"
        f" while it exists, and it was locked from {source}",
        hint=f"lock that file instead (`inv lock --lock-input {named_file}`), or move"
        f" {settings.lock_file} away to build from {settings.requirements}",
    )


def choose_dockerfile(settings: Settings, cwd: Path, context: Path) -> Path:
    """The configured Dockerfile, else the context's own, else the built-in template."""
    if settings.dockerfile:
        return existing_file(settings.dockerfile, cwd, "dockerfile", "Dockerfile")
    if (context / "Dockerfile").is_file():
        return context / "Dockerfile"
    return template_path()


def plan_build(settings: Settings, cwd: Path) -> BuildPlan:
    """Plan ``build-image``: the lock when present, the wheelhouse when present."""
    context = resolve_context(settings, cwd)
    dockerfile = choose_dockerfile(settings, cwd, context)
    check_context(settings, cwd, context, dockerfile)
    requirements, requirements_file, locked = requirements_for(settings, context)
    wheelhouse = context / settings.wheelhouse if settings.wheelhouse else None
    if wheelhouse is not None and (wheelhouse / lockfile.MANIFEST).is_file():
        # A reviewed wheelhouse: no key, no host keys, no network.
        lockfile.check_wheelhouse(
            wheelhouse, context / requirements_file, requirements if locked else None
        )
        args = _build_args(
            dockerfile,
            settings,
            BASE_IMAGE=settings.base_image,
            INSTALLER=settings.installer,
            REQUIREMENTS=requirements_file,
            WHEEL_SOURCE="vendored",
            WHEELHOUSE=settings.wheelhouse,
            BASE_IMAGE_USER="",
        )
        if "WHEEL_SOURCE" not in args:
            raise SettingsError(
                f"{dockerfile} cannot build from a wheelhouse (no ARG WHEEL_SOURCE)",
                hint=f"use the built-in template, or remove {wheelhouse} to build over SSH",
            )
        _refuse_ignored_inputs(context, dockerfile, args, "WHEELHOUSE")
        return BuildPlan(
            settings,
            context,
            dockerfile,
            requirements,
            args,
            _secrets(settings, cwd),
            target=settings.target,
            forward_key=False,
            network="none",
            cache_from=_cache_option(settings, cwd, "cache_from"),
            cache_to=_cache_option(settings, cwd, "cache_to"),
        )
    index = index_credentials(settings, cwd)
    secrets = _secrets(settings, cwd, index)
    _one_index(requirements, secrets)
    if settings.installer == "pip" and not _locked_arg(requirements, locked):
        _one_source_for_pip(requirements, secrets, settings.index_url, "build-image")
    constraints = lockfile.build_constraints(context / requirements_file) if locked else ""
    args = _build_args(
        dockerfile,
        settings,
        BASE_IMAGE=settings.base_image,
        INSTALLER=settings.installer,
        INDEX_CONFIG=index_config(secrets),
        REQUIREMENTS=requirements_file,
        # The URL lines install in a step of their own, over SSH, which a
        # change to the index packages does not rerun (see the template).
        URL_REQUIREMENTS=requirements.url_requirements,
        LOCKED=_locked_arg(requirements, locked),
        # The lock's hash-pinned build requirements of its git packages.
        BUILD_CONSTRAINTS=constraints,
        WHEELHOUSE=settings.wheelhouse,
        SSH_IDENTITY="",
        # Filled in by `execute`, from the engine (see engine.image_user).
        BASE_IMAGE_USER="",
        # No wheelhouse folder in the context: nothing to prune from /app, so an
        # app change costs one COPY rather than a container run (unless the
        # image runs as another user than root: see _with_base_image_user).
        APP_SOURCE="app-pruned" if wheelhouse is not None and wheelhouse.exists() else "app-plain",
        **_index_arg(dockerfile, index, requirements),
    )
    _refuse_ignored_inputs(context, dockerfile, args, "REQUIREMENTS")
    # The template, or a copy of it; a lock's exact pins install alike either way.
    if "INSTALLER" in args and settings.installer != "pip" and not args.get("LOCKED"):
        refuse_options_uv_ignores(
            requirements, f"uv installs the build (installer={settings.installer})"
        )
    return BuildPlan(
        settings,
        context,
        dockerfile,
        requirements,
        args,
        secrets,
        generated_secrets={
            "known_hosts": pinned_hosts(settings, requirements),
            **_uv_config(secrets),
        },
        target=settings.target,
        network=settings.network,
        index=index,
        cache_from=_cache_option(settings, cwd, "cache_from"),
        cache_to=_cache_option(settings, cwd, "cache_to"),
        warnings=_unchecked_backends(
            settings, (requirements, requirements_file, constraints), args, dockerfile
        )
        if locked
        else (),
    )


def _has_git_packages(requirements: Requirements) -> bool:
    """Whether ``requirements`` build a package from git (in the SSH step)."""
    return any(entry.url.startswith("git+") for entry in requirements.entries)


def _unpinned_backends(lock: str, raw: str, constraints: str, path: Path) -> str:
    """What a new lock leaves unpinned of its git packages' build backends, if any:
    all of them (the lock step said why), or the requirements uv could not hash."""
    if not _has_git_packages(parse_requirements(raw, path)):
        return ""
    if not constraints.strip():
        return (
            f"{lock} pins no build backend for its git packages (the lock step says why"
            " above): builds from it will not hash-check them"
        )
    entries = parse_requirements(constraints, path).entries
    unhashed = [e.name for e in entries if not e.hashes]
    if unhashed:
        return (
            f"{lock} cannot pin the build requirements {', '.join(unhashed)} of its git"
            " packages (they have no hashes, as a git URL has none): they are not checked"
        )
    return ""


def _unchecked_backends(
    settings: Settings, lock: tuple[Requirements, str, str], args: dict[str, str], dockerfile: Path
) -> tuple[str, ...]:
    """Why a build from ``lock`` (its requirements, its name in the context, its
    build constraints) would build its git packages with backends that are not
    hash-checked, if it would: a lock from before they were pinned (or whose lock
    step could not pin them), a Dockerfile copied from an older template, or pip,
    which cannot check them."""
    requirements, name, constraints = lock
    if not _has_git_packages(requirements):
        return ()
    if "BUILD_CONSTRAINTS" not in args:  # _build_args keeps only the declared ones
        if not constraints:
            return ()  # a Dockerfile of the user's own, and nothing it could take
        return (
            f"{dockerfile.name} declares no ARG BUILD_CONSTRAINTS, so the build backends"
            f" {name} pins for its git packages are not checked: pass them to"
            " `uv pip install --build-constraints` as the built-in template does",
        )
    if not constraints:
        return (
            f"{name} pins no build backend for its git packages, so the backends that build"
            " them are not hash-checked: run `inv lock` again to pin them",
        )
    if settings.installer == "pip":
        return (
            f"installer=pip: pip cannot check the build backends {name} pins for its git"
            " packages; uv checks them (installer auto or uv)",
        )
    return ()


def _locked_arg(requirements: Requirements, locked: bool) -> str:
    """``LOCKED``: "1" for a lock or any file with hashes (pip's rule: a single
    ``--hash`` puts the whole file in hash-checking mode), else empty."""
    return "1" if locked or any(e.hashes for e in requirements.entries) else ""


def _uv_config(secrets: dict[str, Path]) -> dict[str, str]:
    """uv reads no pip.conf: a uv.toml made from its index settings, unless one is given.

    The pip config is read even when a uv config is given: pip uses it too,
    and a file pip cannot read is better refused before the build than quoted
    by pip in the build's output.
    """
    if "pip_config" not in secrets:
        return {}
    translated = lockfile.uv_config_from_pip(secrets["pip_config"])
    if "uv_config" in secrets or not translated:
        return {}
    return {"uv_config": translated}


# A URL's scheme, then its user info (dropped), its host and path, then its
# query and fragment (dropped): the parts that may carry a token go.
# The user info runs to the authority's last "@" (pip reads a password holding "@" so).
_URL_PARTS = re.compile(r"([a-z][a-z0-9+.-]*://)(?:[^/?#\s]*@)?([^?#\s]*)(?:[?#]\S*)?", re.I)


def _without_credentials(value: object) -> object:
    """``value`` (a parsed config) with the user info and query of every URL in it taken out."""
    if isinstance(value, str):
        return _URL_PARTS.sub(r"\1\2", value)
    if isinstance(value, dict):
        return {key: _without_credentials(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_credentials(item) for item in value]
    return value


def index_config(secrets: dict[str, Path]) -> str:
    """A digest of where the build's packages come from, for the cache keys (``INDEX_CONFIG``).

    BuildKit keys a step by its command, build args and files, never by what
    its secret mounts hold: without this, a pip or uv config pointed at
    another index, or a new CA bundle, would leave every install step cached.
    Only what holds no secret goes in: the configs' index settings with the
    user info and query of every URL taken out, and the CA bundle
    (certificates are public). The .netrc holds nothing but credentials and
    stays out, so a rotated token reruns nothing. Empty without such files.
    """
    parts: dict[str, object] = {}
    if "pip_config" in secrets:
        parts["pip_config"] = _without_credentials(
            lockfile.uv_config_from_pip(secrets["pip_config"])
        )
    if "uv_config" in secrets:
        parts["uv_config"] = _without_credentials(_read_toml(secrets["uv_config"], "uv_config"))
    if "ca_bundle" in secrets:
        bundle = read_bytes(secrets["ca_bundle"], "ca_bundle")
        parts["ca_bundle"] = hashlib.sha256(bundle).hexdigest()
    if not parts:
        return ""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _one_index(requirements: Requirements, secrets: dict[str, Path]) -> None:
    """Refuse a requirements file that names its index when a pip or uv config does too.

    pip lets the file's ``--index-url`` win over its config's, uv lets its
    config win over the file's (and the tool gives uv the pip config's index):
    the two installers, and `lock` against the builds, would fetch from
    different indexes. (index_url itself is checked in `_index_arg`.)
    """
    named = _file_index_options(requirements)
    if not named:
        return
    configs = []
    if "pip_config" in secrets and re.search(
        r"(?m)^index-url = ", lockfile.uv_config_from_pip(secrets["pip_config"])
    ):
        configs.append("pip_config")
    if "uv_config" in secrets:
        parsed = _read_toml(secrets["uv_config"], "uv_config")
        data: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        pip_table = data["pip"] if isinstance(data.get("pip"), dict) else {}
        indexes = data["index"] if isinstance(data.get("index"), list) else []
        if (
            "index-url" in data
            or "index-url" in pip_table
            or any(isinstance(i, dict) and i.get("default") for i in indexes)
        ):
            configs.append("uv_config")
    if configs:
        raise SettingsError(
            f"{requirements.path.name} names an index ({named[0]}) and {configs[0]} does too:"
            " pip lets the file's win, uv the config's",
            hint=f"keep one: remove the file's {named[0]}, or the index from {configs[0]}",
        )


#: Where pip looks when nothing says otherwise.
_PYPI = "https://pypi.org/simple"
#: A URL's scheme and host, which are case-insensitive (its path is not).
_SCHEME_HOST = re.compile(r"[a-z][a-z0-9+.-]*://[^/]*", re.I)


def _file_sources(requirements: Requirements) -> dict[str, list[str]]:
    """The index options of a requirements file, read as pip reads them (see
    `split_options`); an empty value is no value, as pip takes it."""
    kinds = {"--index-url": "index", "--extra-index-url": "extra", "--find-links": "links"}
    found: dict[str, list[str]] = {"index": [], "extra": [], "links": [], "no-index": []}
    for option in file_options(requirements):
        if option.name == "--no-index":
            found["no-index"].append(option.name)
        elif option.name in kinds and option.value.strip():
            found[kinds[option.name]].append(option.value.strip())
    return found


def pip_sources(requirements: Requirements, secrets: dict[str, Path], index_url: str) -> list[str]:
    """Every place pip takes packages from for ``requirements``, as pip combines
    them: the file's own index replaces the config's index and extra indexes
    (pip's req_file), index_url (PIP_INDEX_URL) the config's index, then the
    extra indexes and find-links locations of both; none of the indexes with
    no-index. Each once, credentials, queries and fragments left out."""
    config: dict[str, Any] = {}
    if "pip_config" in secrets:
        config = lockfile.tomllib().loads(lockfile.uv_config_from_pip(secrets["pip_config"]))
    named = _file_sources(requirements)
    if named["index"]:
        indexes = [named["index"][-1], *named["extra"]]
    else:
        primary = index_url or str(config.get("index-url") or "") or _PYPI
        indexes = [primary, *config.get("extra-index-url", []), *named["extra"]]
    if named["no-index"] or config.get("no-index"):
        indexes = []
    found: list[str] = []
    for url in [*indexes, *config.get("find-links", []), *named["links"]]:
        plain = str(_without_credentials(url)).rstrip("/")
        scheme_host = _SCHEME_HOST.match(plain)
        if scheme_host:
            plain = scheme_host.group().lower() + plain[scheme_host.end() :]
        if plain and plain not in found:
            found.append(plain)
    return found


def _shown(source: str) -> str:
    """A place pip looks, for a message: its scheme and host (a path may hold a token)."""
    scheme_host = _SCHEME_HOST.match(source)
    return scheme_host.group() if scheme_host else "a local folder"


def _one_source_for_pip(
    requirements: Requirements, secrets: dict[str, Path], index_url: str, task: str
) -> None:
    """Refuse an unhashed install by pip from more than one place.

    pip takes each package from whichever index or find-links location offers
    the highest version: a package published under a private package's name,
    with a higher version, on any of them is installed instead (dependency
    confusion). uv takes a package from the first index that has it, and
    hashes pin every file, so only pip without hashes is refused.
    """
    sources = pip_sources(requirements, secrets, index_url)
    if len(sources) < 2:
        return
    raise SettingsError(
        f"{task} would have pip take each package from {len(sources)} places"
        f" ({', '.join(map(_shown, sources))}) by version alone, so a package of the same"
        " name with a higher version on any of them would be installed instead",
        hint="run `inv lock` first (the lock pins every file by its hash), or keep to"
        " one index" + (" or let uv install (installer=auto)" if task == "build-image" else ""),
    )


def _read_toml(path: Path, setting: str) -> object:
    """A TOML file the tool hands to uv, parsed; one line (never its text) if it is not TOML."""
    tomllib = lockfile.tomllib()
    try:
        return tomllib.loads(read_bytes(path, setting).decode("utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(
            f"{setting} {path} is not UTF-8 text", hint="save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        # The message gives the line and column, never the text found there.
        raise SettingsError(
            f"{setting} {path} cannot be read as TOML: {exc}", hint="fix its TOML syntax"
        ) from None


def plan_lock(settings: Settings, cwd: Path, output: Path) -> tuple[BuildPlan, lockfile.LockInput]:
    """Plan ``lock``: resolve the lock input inside the target image, export the lock."""
    context = resolve_context(settings, cwd)
    check_context(settings, cwd, context)
    source = lockfile.find_input(context, settings.lock_input)
    requirements = _input_requirements(source)
    refuse_options_uv_ignores(requirements, "`inv lock` resolves with uv")
    dockerfile = template_path()
    project_base = wheel_base_image(settings, cwd, context)
    index = index_credentials(settings, cwd)
    secrets = _secrets(settings, cwd, index)
    _one_index(requirements, secrets)
    generated = {
        "known_hosts": pinned_hosts(settings, requirements),
        # The program the lock step runs to read its git packages' build
        # requirements: a secret mount is the one way to hand the step a file
        # that is neither in the context nor left in any layer.
        "build_requires": BUILD_REQUIRES_PROGRAM.read_text(encoding="utf-8"),
        **_uv_config(secrets),
    }
    args = _build_args(
        dockerfile,
        settings,
        BASE_IMAGE=project_base,
        INSTALLER=settings.installer,
        INDEX_CONFIG=index_config(secrets),
        LOCK_INPUT=source.relative,
        # The input's URL lines: the lock step puts back the user names uv hides.
        LOCK_URLS="\n".join(requirements.url_lines),
        SSH_IDENTITY="",
        LOCK_RUN=os.urandom(8).hex(),
        **_index_arg(dockerfile, index, requirements),
    )
    _refuse_ignored_inputs(context, dockerfile, args, "LOCK_INPUT")
    plan = BuildPlan(
        settings,
        context,
        dockerfile,
        requirements,
        args,
        secrets,
        generated_secrets=generated,
        target="lock-export",
        output=output,
        tag=False,
        network=settings.network,
        index=index,
    )
    return plan, source


def _input_requirements(source: lockfile.LockInput) -> Requirements:
    if source.path.name != "pyproject.toml":
        return read_requirements(source.path)
    tomllib = lockfile.tomllib()
    try:
        data = tomllib.loads(source.path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RequirementsError(
            f"cannot parse {source.path} ({exc.__class__.__name__})",
            hint="fix the TOML syntax",
        ) from None
    dependencies = data.get("project", {}).get("dependencies", [])
    if not isinstance(dependencies, list) or not dependencies:
        raise RequirementsError(
            f"{source.path} lists no [project] dependencies to lock",
            hint="add them, or lock a requirements.in instead (securebuild.lock_input)",
        )
    lines = [str(d) for d in dependencies]
    # [tool.uv.sources] may fetch a dependency from git over SSH: uv honours it
    # when it resolves, so its host must be pinned (and the key forwarded) too.
    tool: dict[str, Any] = data["tool"] if isinstance(data.get("tool"), dict) else {}
    uv: dict[str, Any] = tool["uv"] if isinstance(tool.get("uv"), dict) else {}
    sources = uv.get("sources", {})
    for name, given in sources.items() if isinstance(sources, dict) else ():
        for entry in given if isinstance(given, list) else [given]:
            url = entry.get("git") if isinstance(entry, dict) else None
            if isinstance(url, str) and url:
                lines.append(f"{name} @ {url if url.startswith('git+') else 'git+' + url}")
    return parse_requirements("\n".join(lines) + "\n", source.path)


def plan_vendor(settings: Settings, cwd: Path, output: Path) -> BuildPlan:
    """Plan ``vendor``: build every wheel of the lock (or requirements) and export them."""
    context = resolve_context(settings, cwd)
    check_context(settings, cwd, context)
    requirements, requirements_file, locked = requirements_for(settings, context)
    dockerfile = template_path()
    project_base = wheel_base_image(settings, cwd, context)
    index = index_credentials(settings, cwd)
    secrets = _secrets(settings, cwd, index)
    _one_index(requirements, secrets)
    if not _locked_arg(requirements, locked):
        _one_source_for_pip(requirements, secrets, settings.index_url, "vendor")
    args = _build_args(
        dockerfile,
        settings,
        BASE_IMAGE=project_base,
        INSTALLER=settings.installer,
        INDEX_CONFIG=index_config(secrets),
        REQUIREMENTS=requirements_file,
        URL_REQUIREMENTS=requirements.url_requirements,
        LOCKED=_locked_arg(requirements, locked),
        SSH_IDENTITY="",
        **_index_arg(dockerfile, index, requirements),
    )
    _refuse_ignored_inputs(context, dockerfile, args, "REQUIREMENTS")
    return BuildPlan(
        settings,
        context,
        dockerfile,
        requirements,
        args,
        secrets,
        generated_secrets={"known_hosts": pinned_hosts(settings, requirements)},
        target="wheelhouse",
        output=output,
        tag=False,
        network=settings.network,
        index=index,
    )


def build_command(
    engine: Engine, plan: BuildPlan, key: ForwardedKey | None, secret_paths: dict[str, Path]
) -> list[str]:
    """The docker argv for ``plan``: a key travels only as ``--ssh default=SOCKET``."""
    s = plan.settings
    if key is not None and "," in key.socket:
        # docker splits --ssh paths at commas and has no way to quote one.
        raise SettingsError(
            f"the agent socket {key.socket} has a comma in its path, which docker's --ssh"
            " option cannot carry",
            hint="use a TMPDIR (or SSH_AUTH_SOCK, securebuild.agent_socket) without a comma",
        )
    progress = "plain" if s.progress == "auto" else s.progress
    secrets = [csv_option(f"id={sid}", f"src={path}") for sid, path in secret_paths.items()]
    build_args = dict(plan.build_args)
    if "SSH_IDENTITY" in build_args:
        # The plan kept it because the Dockerfile declares it; the value is known now.
        if key is None:
            del build_args["SSH_IDENTITY"]
        else:
            build_args["SSH_IDENTITY"] = key.fingerprint
    buildx = engine.mode == "buildx"
    named = s.buildx_builder if buildx else ""
    command = (
        CommandBuilder(*engine.build_prefix())
        .option("--builder", named)
        # A docker-container or remote builder grants host networking only when
        # the build asks (and its buildkitd allows it); the docker driver accepts it.
        .option("--allow", "network.host" if buildx and plan.network == "host" else "")
        .option("--progress", progress)
        .option("--file", str(plan.dockerfile))
        .option("--tag", s.image_ref if plan.tag else "")
        .option("--label", f"{PROJECT_LABEL}={project_id(plan.context)}" if plan.tag else "")
        .option("--target", plan.target)
        .option("--platform", s.platform)
        .option("--network", plan.network)
        .option("--ssh", f"default={key.socket}" if key else "")
        .repeated("--secret", secrets)
        .repeated("--build-arg", [f"{k}={v}" for k, v in build_args.items()])
        .option("--cache-from", plan.cache_from if buildx else "")
        .option("--cache-to", plan.cache_to if buildx else "")
        .option("--output", csv_option("type=local", f"dest={plan.output}") if plan.output else "")
        .flag("--no-cache", s.no_cache)
        .flag("--load", engine.mode == "buildx" and plan.tag)
        .add(str(plan.context))
    )
    return command.argv


def csv_option(*fields: str) -> str:
    """``--secret`` / ``--output`` values: docker reads them as one CSV record.

    A path with a comma, a quote or a newline (a project under "my, project")
    must be quoted, or docker misreads it, or takes part of it as another field.
    """
    import csv
    import io

    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(fields)
    return line.getvalue()


def project_id(context: Path) -> str:
    """A stable label value naming the project, so `clean` finds only its images."""
    import hashlib

    return hashlib.sha256(str(context.resolve()).encode()).hexdigest()[:16]


#: Signals that end a run like Ctrl-C does, so the key is revoked and the work
#: directory removed (SIGHUP: the terminal or SSH session went away).
_INTERRUPTS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM, SIGHUP and SIGQUIT into KeyboardInterrupt while a key is forwarded."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous: dict[int, object] = {}
    try:
        for signum in _INTERRUPTS:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)  # type: ignore[arg-type]


_Call = TypeVar("_Call", bound=Callable[..., Any])


def _interruptible(func: _Call) -> _Call:
    """Run ``func`` with SIGTERM, SIGHUP and SIGQUIT turned into KeyboardInterrupt
    from its first line: the work folder, a wheelhouse's staging folder and the
    engine's detection (which may wait 30 s on a daemon that hangs) come before
    `execute`, and a signal then must clean up as one during the build does."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _signals_as_interrupt():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Executed:
    """What running a plan used."""

    engine: Engine
    key: ForwardedKey | None
    seconds: float


def check_builder_settings(settings: Settings, engine: Engine) -> None:
    """Refuse settings only docker buildx can carry out when ``engine`` has none."""
    if settings.buildx_builder and engine.mode != "buildx":
        raise SettingsError(
            f"setting buildx_builder names a buildx builder ({settings.buildx_builder}),"
            f" but {engine.docker} {engine.client_version} has no buildx plugin",
            hint="install the docker buildx plugin, or leave buildx_builder empty",
        )
    if (settings.cache_from or settings.cache_to) and engine.mode != "buildx":
        name = "cache_to" if settings.cache_to else "cache_from"
        raise SettingsError(
            f"setting {name} needs docker buildx, but {engine.docker} {engine.client_version}"
            " has no buildx plugin",
            hint=f"install the docker buildx plugin, or leave {name} empty",
        )


def execute(
    plan: BuildPlan, *, out: IO[str] | None = None, probe: EngineProbe | None = None
) -> Executed:
    """Run ``plan``; raise a `SecurebuildError` with a next step on failure.

    ``probe``: the engine's detection, started by the caller before planning.
    """
    out = out or sys.stderr
    reap_stale_workdirs()
    for warning in plan.warnings:
        out.write(f"securebuild: warning: {warning}\n")
    # Data flows one way: the key source is checked (nothing loaded yet), then
    # the engine, and only then is a key loaded and forwarded.
    source: KeySource | None = None
    if plan.forward_key:
        # No key of the user's reaches a build that fetches nothing over SSH.
        needed = key_needed(plan)
        source = choose_key_source(plan.settings) if needed else NoKeySource(plan.settings)
    if source is not None:
        source.check()
    if plan.index is not None:
        plan.index.check()
    with probe or EngineProbe(plan.settings.docker, plan.settings.builder) as detecting:
        engine = detecting.engine()
    check_builder_settings(plan.settings, engine)
    ping(engine)
    started = time.monotonic()
    with _signals_as_interrupt(), private_workdir() as workdir:
        secret_paths = dict(plan.secret_files)
        for secret_id, text in plan.generated_secrets.items():
            secret_paths[secret_id] = write_private(workdir, f"{secret_id}.secret", text)
        if plan.index is not None:
            secret_paths["netrc"] = plan.index.write_netrc(workdir)
        forwarding = source.forward(workdir) if source else contextlib.nullcontext(None)
        with forwarding as key:
            # After the key is loaded (a key that cannot be does not wait for a
            # pull), before the build, which would pull the base image itself.
            plan = _with_base_image_user(plan, engine, out)
            what = plan.settings.image_ref if plan.tag else plan.target
            how = f"key {key.fingerprint} from {key.source}" if key else "no key, no network"
            if key is not None and key.source == NoKeySource.name:
                how = "no key (nothing is fetched over SSH)"
            if plan.index is not None:
                how += f", {plan.index.describe()}"
            out.write(f"securebuild: building {what} with {engine.mode} ({engine.docker}), {how}\n")
            out.flush()
            argv = build_command(engine, plan, key, secret_paths)
            try:
                run_streaming(
                    argv,
                    env=engine.child_env(),
                    out=out,
                    passthrough=plan.settings.progress == "tty",
                    on_interrupt=key.revoke if key else None,
                )
            except BuildError as exc:
                _engine_still_there(engine, exc)
                raise _explain(exc, plan) from None
    return Executed(engine, key, time.monotonic() - started)


def _with_base_image_user(plan: BuildPlan, engine: Engine, out: IO[str]) -> BuildPlan:
    """``plan`` with ``BASE_IMAGE_USER`` filled in, when its Dockerfile declares it (the
    template's runtime-base stage) and the user's build_args do not set it: the
    user the base image runs as, which the build steps set aside to run as root.
    An image that runs as another user than root gets its app through the stage
    that makes it readable to that user (see `readable_app`)."""
    if "BASE_IMAGE_USER" not in plan.build_args:
        return plan
    if "BASE_IMAGE_USER" in plan.settings.build_args:
        return readable_app(plan, plan.build_args["BASE_IMAGE_USER"])
    base = dockerfile_base_image(plan.dockerfile, plan.build_args, "base")
    if not base:
        if TEMPLATE_MARK in dockerfile_text(plan.dockerfile):
            # Building would run the image as root, whatever user its base has.
            raise SettingsError(
                f"cannot tell which image the `base` stage of {plan.dockerfile} starts from,"
                " so not which user the image should run as",
                hint="set base_image to a plain image reference (NAME[:TAG][@sha256:DIGEST]),"
                " or pass BASE_IMAGE_USER in build_args",
            )
        # A Dockerfile of the user's own without such a stage: its own default stands.
        args = {k: v for k, v in plan.build_args.items() if k != "BASE_IMAGE_USER"}
        return dataclasses.replace(plan, build_args=args)
    user = image_user(engine, base, plan.settings.platform, out)
    plan = dataclasses.replace(plan, build_args={**plan.build_args, "BASE_IMAGE_USER": user})
    return readable_app(plan, user)


def readable_app(plan: BuildPlan, user: str) -> BuildPlan:
    """``plan`` with ``APP_SOURCE=app-pruned`` when the image runs as ``user`` and
    that is not root: the app, owned by root, then reaches the image readable
    by all (see the template's runtime section), since a file that is private
    in the context (mode 0600, as under umask 077) would be unreadable to that
    user. Root reads everything: its images keep the one-copy app-plain."""
    name = user.partition(":")[0].strip()
    if plan.build_args.get("APP_SOURCE") != "app-plain" or name in ("", "0", "root"):
        return plan
    if "APP_SOURCE" in plan.settings.build_args:
        return plan
    return dataclasses.replace(plan, build_args={**plan.build_args, "APP_SOURCE": "app-pruned"})


#: What the docker client prints last when its connection to the engine broke
#: (the daemon stopped or restarted), rather than the build failing.
_CONNECTION_LOST = re.compile(
    r"\A(unexpected EOF|error reading from server: EOF|.*rpc error: code = Unavailable.*)\Z"
)


def _engine_still_there(engine: Engine, exc: BuildError) -> None:
    """After a failed build: if the daemon is gone, say so rather than "build failed".

    A daemon stopped mid-build leaves the client with a bare "unexpected EOF";
    the next step is to look at the engine, not at the Dockerfile. A daemon
    shutting down may still answer a ping for a moment, so the client's own
    last word counts too.
    """
    try:
        ping(engine)
    except EngineError as gone:
        raise EngineError(
            f"the Docker engine stopped answering during the build ({gone.message})",
            hint="check the daemon (`docker info`, its logs), then run the build again",
        ) from None
    lines = [line.strip() for line in exc.output.splitlines() if line.strip()]
    if lines and _CONNECTION_LOST.match(lines[-1]):
        raise EngineError(
            f"the connection to the Docker engine broke during the build ({lines[-1]})",
            hint="check the daemon (`docker info`, its logs): was it stopped or restarted?"
            " Then run the build again",
        )


@_interruptible
def build_image(settings: Settings, *, cwd: Path, out: IO[str] | None = None) -> BuildResult:
    """Build the image (offline from the wheelhouse when there is one)."""
    adopt_env_token()  # before the first docker query starts: see adopt_env_token
    # The engine's detection runs while the inputs are read (see EngineProbe).
    with EngineProbe(settings.docker, settings.builder) as probe:
        plan = plan_build(settings, cwd)
        done = execute(plan, out=out, probe=probe)
    info = inspect_image(settings.image_ref, done.engine.docker)
    return BuildResult(
        settings.image_ref,
        info.id,
        info.size,
        done.key.fingerprint if done.key else "",
        done.key.source if done.key else "",
        done.seconds,
        offline=not plan.forward_key,
    )


@_interruptible
def lock(settings: Settings, *, cwd: Path, out: IO[str] | None = None) -> Path:
    """Resolve the lock input inside the target image; write the lock file."""
    adopt_env_token()
    # A work dir with this process as its owner: another run's reaper leaves it
    # alone however long the resolution takes, and removes it if this run is killed.
    with private_workdir() as tmp:
        with EngineProbe(settings.docker, settings.builder) as probe:
            plan, source = plan_lock(settings, cwd, tmp)
            execute(plan, out=out, probe=probe)
        try:
            raw = (tmp / "requirements.lock").read_text(encoding="utf-8")
        except OSError:
            raise BuildError(
                "the lock stage produced no requirements.lock",
                command=[],
                returncode=0,
                hint="check that the Dockerfile template is the one shipped with securebuild-tasks",
            ) from None
        built = tmp / "build-constraints.txt"
        constraints = built.read_text(encoding="utf-8") if built.is_file() else ""
        target = plan.context / settings.lock_file
        text = lockfile.finish(raw, source, plan.requirements.options, constraints)
        _write_atomically(target, text)
    warning = _unpinned_backends(settings.lock_file, raw, constraints, target)
    if warning:
        (out or sys.stderr).write(f"securebuild: warning: {warning}\n")
    return target


@_interruptible
def vendor(settings: Settings, *, cwd: Path, out: IO[str] | None = None) -> Path:
    """Build wheels for the lock and replace the wheelhouse with them, with a manifest."""
    adopt_env_token()
    context = resolve_context(settings, cwd)
    if not settings.wheelhouse:
        raise SettingsError(
            "setting wheelhouse is empty, so there is nowhere to vendor to",
            hint="set securebuild.wheelhouse, e.g. vendor/python",
        )
    wheelhouse = context / settings.wheelhouse
    if wheelhouse.exists() and not wheelhouse.is_dir():
        raise SettingsError(
            f"wheelhouse {wheelhouse} is a file, not a folder",
            hint="move it away, or set securebuild.wheelhouse to another folder",
        )
    foreign = wheelhouse.exists() and not lockfile.is_wheelhouse(wheelhouse)
    if foreign and any(wheelhouse.iterdir()):
        raise SettingsError(
            f"{wheelhouse} exists and was not made by `inv vendor`; not overwriting it",
            hint="move it away, or set securebuild.wheelhouse to another folder",
        )
    # Where the previous wheelhouse waits while the new one is swapped in.
    old = lockfile.previous_wheelhouse(wheelhouse)
    if (old.exists() or old.is_symlink()) and not lockfile.is_wheelhouse(old):
        raise SettingsError(
            f"{old} exists and was not made by `inv vendor`, which keeps the previous"
            " wheelhouse there while it swaps in the new one; not removing it",
            hint="move it away, or set securebuild.wheelhouse to another folder",
        )
    # The folders made for the wheelhouse go again if the run fails.
    made = [p for p in wheelhouse.parents if p not in context.parents and not p.exists()]
    try:
        wheelhouse.parent.mkdir(parents=True, exist_ok=True)
        # Export next to the wheelhouse so the final swap is a rename on one disk.
        staging = Path(tempfile.mkdtemp(prefix=".securebuild-vendor-", dir=wheelhouse.parent))
    except OSError as exc:
        _remove_empty(made)
        raise SettingsError(
            f"cannot make the wheelhouse {wheelhouse}:"
            f" {exc.strerror or exc.__class__.__name__} ({exc.filename})",
            hint="a file may stand where a folder is needed: move it away, or set"
            " securebuild.wheelhouse to another folder",
        ) from None
    try:
        with EngineProbe(settings.docker, settings.builder) as probe:
            plan = plan_vendor(settings, cwd, staging)
            source = plan.build_args.get("REQUIREMENTS", "")
            digest = lockfile.requirements_digest(plan.context / source)
            execute(plan, out=out, probe=probe)
        lockfile.write_manifest(staging, source, digest)
        shutil.rmtree(old, ignore_errors=True)
        if wheelhouse.exists():
            os.rename(wheelhouse, old)
        os.rename(staging, wheelhouse)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(made)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return wheelhouse


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _write_atomically(path: Path, text: str) -> None:
    """Write the lock beside its final name, then rename: a reader never sees half."""
    temporary = lockfile.partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise SettingsError(
            f"cannot write the lock {path}: {exc.strerror or exc.__class__.__name__}",
            hint="check the folder's permissions, or set securebuild.lock_file",
        ) from None


_RESOLUTION = (
    # uv: the first "cause" line says which requirement cannot be had.
    re.compile(
        r"No solution found when resolving dependencies[^\n]*\n(?:#\d+ [\d.]+ )?\s*"
        r"(?:cause|╰─▶): ([^\n]+)"
    ),
    re.compile(r"(Could not find a version that satisfies the requirement [^\n]+)"),
    re.compile(
        r"(Cannot install [^\n]+ because these package versions have conflicting"
        r" dependencies)"
    ),
    re.compile(r"(pathspec '[^']+' did not match any file\(s\) known to git)"),
    re.compile(r"fatal: (couldn't find remote ref [^\n]+)"),
    re.compile(r"(Git operation failed[^\n]*)"),
)


#: pip's and uv's words for a file that does not match its pinned hash.
_HASH_MISMATCH = ("THESE PACKAGES DO NOT MATCH THE HASHES", "cause: Hash mismatch for")

# uv: an index or find-links page that wants credentials it was not given.
_INDEX_REFUSAL = re.compile(r"HTTP status client error \((40[13])[^)]*\) for url \(([^)\s]+)\)")


def _index_refusal(output: str) -> str:
    """Which index refused the build's requests, by host and port (never credentials)."""
    match = _INDEX_REFUSAL.search(output)
    if not match:
        return ""
    from urllib.parse import urlsplit

    url = urlsplit(match.group(2))
    where = f"{url.hostname}:{url.port}" if url.port else str(url.hostname)
    reason = "401 Unauthorized" if match.group(1) == "401" else "403 Forbidden"
    return f"the package index {where} refused the build's requests ({reason})"


def _resolution_failure(output: str) -> str:
    """The line of pip's, uv's or git's output that says what cannot be resolved."""
    for pattern in _RESOLUTION:
        if match := pattern.search(output):
            return f"the requirements cannot be resolved: {match.group(1).strip()}"
    return ""


# The docker CLI's own ssh to an ssh:// engine failed (not ssh inside the build).
_ENGINE_SSH = re.compile(
    r"command \[ssh [^\]]*docker system dial-stdio\] has exited[^\n]*?(?:stderr=([^\n]*))?$",
    re.MULTILINE,
)


def _builder_refusal(output: str, name: str) -> SettingsError | None:
    """buildx's refusal of the builder that buildx_builder names, as one line."""
    if not name:
        return None
    if f'no builder "{name}" found' in output:
        return SettingsError(
            f"there is no buildx builder named {name} (setting buildx_builder)",
            hint="see `docker buildx ls`, or fix securebuild.buildx_builder",
        )
    if f'to switch to context "{name}"' in output:
        return SettingsError(
            f"buildx builder {name} is the docker context {name}'s own builder, which buildx"
            " selects by context, not by --builder",
            hint=f"set DOCKER_CONTEXT={name} (or `docker context use {name}`) and leave"
            " securebuild.buildx_builder empty",
        )
    return None


def _index_refused(refusal: str) -> KeySourceError:
    return KeySourceError(
        refusal,
        hint="give the index's credentials as securebuild.netrc, securebuild.index_url"
        " with a token (`inv store-token`), or in the pip_config / uv_config file",
    )


def _explain(exc: BuildError, plan: BuildPlan) -> SecurebuildError:
    if builder_refusal := _builder_refusal(exc.output, plan.settings.buildx_builder):
        return builder_refusal
    if plan.cache_to and "cache export is not supported" in exc.output.lower():
        return SettingsError(
            "this buildx builder cannot export a build cache (setting cache_to): the docker"
            " driver exports one only from an engine with the containerd image store",
            hint="turn on the containerd image store, build on a docker-container builder"
            " (securebuild.buildx_builder), or leave cache_to empty",
        )
    if match := _ENGINE_SSH.search(exc.output):
        said = (match.group(1) or "").strip()
        return EngineError(
            "the docker CLI could not reach the engine over ssh"
            + (f" (ssh said: {said})" if said else ""),
            hint="check that `docker info` works with the same DOCKER_HOST: the engine host's"
            " key in known_hosts, your login key in ssh-agent or ~/.ssh/config",
        )
    if plan.index is not None and plan.index.refused():
        return KeySourceError(
            f"the package index {index_netloc(plan.index.url)} refused the credentials"
            f" ({plan.index.describe()}, user {plan.settings.index_username})",
            hint="store the right token with `inv store-token` or fix the environment variable,"
            " and check securebuild.index_username",
        )
    said = r"securebuild: cannot read (the (build requirements|URL) of [^\n]*)"
    if found := re.search(said, exc.output):
        return RequirementsError(
            f"cannot lock {found.group(1)}",
            hint="give the repository's URL with its user name in the lock input"
            if found.group(2) == "URL"
            else "check that the key can read the repository, then run `inv lock` again"
            if "git could not" in found.group(1) or "not in the repository" in found.group(1)
            else "check that the package's pyproject.toml at that commit is valid TOML with a"
            " [build-system] requires list, then run `inv lock` again",
        )
    explained = explain_ssh_failure(exc.output, plan.requirements.ssh_hosts)
    if explained is None:
        if re.search(
            r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|UnknownIssuer", exc.output
        ):
            return BuildError(
                "a package index's TLS certificate is not trusted inside the build",
                command=exc.command,
                returncode=exc.returncode,
                output=exc.output,
                hint="behind a TLS-inspecting proxy, set securebuild.ca_bundle to its CA bundle",
            )
        refusal = _index_refusal(exc.output)
        if "securebuild: uv could not be installed" in exc.output:
            # Before the resolution check: pip's own words ("Could not find a
            # version that satisfies the requirement uv") would read as the
            # user's requirement failing. An index that refused is said as such.
            if refusal:
                return _index_refused(refusal)
            return BuildError(
                "uv could not be installed in the build (pip's error is in the output above)",
                command=exc.command,
                returncode=exc.returncode,
                output=exc.output,
                hint="check the index, its credentials and the network, or set"
                " securebuild.installer=pip",
            )
        if resolution := _resolution_failure(exc.output):
            return RequirementsError(
                resolution,
                hint="fix the requirement (name, version, tag or pins), then run again",
            )
        if refusal:
            return _index_refused(refusal)
        if any(sign in exc.output for sign in _HASH_MISMATCH):
            return RequirementsError(
                "a package does not match the hash in the lock or wheelhouse (tampered?)",
                hint="see the build output above; run `inv lock` / `inv vendor` from a trusted"
                " source",
            )
        exc.hint = "see the build output above"
        exc.args = (exc.line(),)
        return exc
    message, hint = explained
    kind: type[SecurebuildError]
    if "refused the forwarded key" in message:
        kind = KeySourceError
    elif "host key" in message or "pinned" in message:
        kind = HostKeyError
    else:
        return BuildError(
            message, command=exc.command, returncode=exc.returncode, output=exc.output, hint=hint
        )
    return kind(message, hint=hint)
