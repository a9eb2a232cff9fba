"""``doctor``: can a build work here? One line per check, each with a fix.

Every check reuses the code a build runs (engine detection, key source
checks, host key selection, the context check), so doctor and build-image
never disagree about what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .audit import SECRET_NAME
from .build import (
    BuildPlan,
    check_builder_settings,
    check_context,
    choose_dockerfile,
    dockerfile_text,
    existing_file,
    key_needed,
    pinned_hosts,
    plan_build,
    requirements_for,
    resolve_context,
    template_path,
)
from .engine import Engine, detect_engine, ping
from .errors import SecurebuildError, as_run
from .index import adopt_env_token, index_credentials, index_netloc
from .keys import backend_name, choose_key_source, keyring_backend
from .requirements import Requirements, parse_requirements
from .settings import Settings

# ARG/ENV names that look like secrets (the names audit flags in an image).
_SECRET_DECLARATION = re.compile(rf"^\s*(ARG|ENV)\s+{SECRET_NAME}", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The line doctor prints."""
        if self.ok:
            return f"ok    {self.name}: {self.detail}"
        return f"FAIL  {self.name}: {self.detail}" + (f" -> {as_run(self.fix)}" if self.fix else "")


def _attempt(name: str, action: Callable[[], str]) -> Check:
    try:
        return Check(name, True, action())
    except SecurebuildError as exc:
        return Check(name, False, exc.message, exc.hint)


def run_checks(settings: Settings, cwd: Path) -> list[Check]:
    """Run every check; never raises for what it checks."""
    adopt_env_token()  # before the first docker query starts: see adopt_env_token
    checks: list[Check] = []
    found: dict[str, Engine] = {}

    def client() -> str:
        engine = detect_engine(settings.docker, settings.builder)
        found["engine"] = engine
        how = "docker buildx build" if engine.mode == "buildx" else "DOCKER_BUILDKIT=1 docker build"
        return f"{engine.docker} {engine.client_version} ({how})"

    checks.append(_attempt("docker client", client))

    def daemon() -> str:
        ping(found["engine"])
        return "reachable"

    def builder() -> str:
        check_builder_settings(settings, found["engine"])
        return "buildx" if found["engine"].mode == "buildx" else "no buildx-only setting"

    if "engine" in found:
        checks.append(_attempt("docker daemon", daemon))
        checks.append(_attempt("builder settings", builder))
    else:
        checks.append(Check("docker daemon", False, "not checked: no usable docker client"))

    # The plan first: whether the build needs a key at all depends on it.
    built: list[BuildPlan] = []

    def plan() -> str:
        # Everything else the build reads before it starts: pip and uv configs,
        # .netrc, secrets, base image, index options. Said once, not twice.
        built.append(plan_build(settings, cwd))
        return "every file and setting the build reads is usable"

    planned = _attempt("build plan", plan)
    chosen: list[str] = []
    keyless = bool(built) and not key_needed(built[0])
    if keyless:
        why = (
            "installs from the wheelhouse"
            if not built[0].forward_key
            else "fetches nothing over SSH"
        )
        checks.append(Check("key source", True, f"none needed: the build {why}"))
    else:
        checks.append(_attempt("key source", lambda: _key_source(settings, chosen)))
    if _needs_keyring(settings, chosen, key=not keyless):
        checks.append(_attempt("keyring", lambda: _keyring(settings)))

    requirements: dict[str, Requirements] = {}

    def load_requirements() -> str:
        found, path, locked = requirements_for(settings, resolve_context(settings, cwd))
        requirements["r"] = found
        if locked:
            return f"{path} (locked, up to date)"
        return f"{path} ({len(found.names)} requirements)"

    checks.append(_attempt("requirements", load_requirements))
    if "r" in requirements:
        checks.append(_attempt("known_hosts", lambda: _known_hosts(settings, requirements["r"])))
    if settings.ca_bundle:
        checks.append(_attempt("CA bundle", lambda: _ca_bundle(settings, cwd)))
    if settings.index_url:
        checks.append(_attempt("index token", lambda: _index_token(settings, cwd)))
    checks.append(_attempt("build context", lambda: _build_context(settings, cwd)))
    checks.append(_attempt("Dockerfile", lambda: _dockerfile(settings, cwd, requirements)))

    if planned.ok or all(planned.detail != check.detail for check in checks):
        checks.append(planned)
    if built:
        checks.extend(_build_backends(built[0]))
    return checks


def _build_backends(plan: BuildPlan) -> list[Check]:
    """What the build says before it starts (the lock's build backends that would go
    unchecked), as FAIL lines; else, for a lock that pins them, how many."""
    if plan.warnings:
        return [Check("build backends", False, warning) for warning in plan.warnings]
    pinned = plan.build_args.get("BUILD_CONSTRAINTS", "")
    if not pinned:
        return []
    names = ", ".join(parse_requirements(pinned, plan.requirements.path).names)
    return [Check("build backends", True, f"pinned by the lock, hash-checked by uv: {names}")]


def _needs_keyring(settings: Settings, chosen: list[str], *, key: bool) -> bool:
    """Whether the build would read the keyring: for the key or a key file's
    passphrase (only if it loads a key at all: ``key``), or for the index
    token. Where it is only one choice of several (``auto``), the key source
    check already says what was chosen."""
    for_key = (
        "keyring" in chosen
        or settings.key_source == "keyring"
        or (settings.key_source == "file" and settings.passphrase_source == "keyring")  # noqa: S105
    )
    for_token = bool(settings.index_url) and settings.index_token_source == "keyring"  # noqa: S105
    return (key and for_key) or for_token


def _key_source(settings: Settings, chosen: list[str]) -> str:
    source = choose_key_source(settings)
    chosen.append(source.name)
    source.check()
    detail = {"agent": "the ssh-agent", "keyring": "the OS keyring", "file": "a key file"}
    return f"{source.name}: {detail[source.name]} is usable"


def _keyring(settings: Settings) -> str:
    backend = keyring_backend(settings)
    name = backend_name(backend)
    if name == type(backend).__name__:
        name = f"{type(backend).__module__}.{name}"
    return f"{name} (priority {backend.priority})"


def _known_hosts(settings: Settings, requirements: Requirements) -> str:
    if not requirements.ssh_hosts:
        return "no git host over SSH to pin"
    pinned_hosts(settings, requirements)
    return "pinned: " + ", ".join(str(h) for h in requirements.ssh_hosts)


def _ca_bundle(settings: Settings, cwd: Path) -> str:
    path = existing_file(settings.ca_bundle, cwd, "ca_bundle", "CA bundle")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SecurebuildError(
            f"cannot read CA bundle {path} ({exc.strerror})", hint="fix securebuild.ca_bundle"
        ) from None
    count = text.count("BEGIN CERTIFICATE")
    if not count:
        raise SecurebuildError(
            f"CA bundle {path} holds no PEM certificate",
            hint="give the PEM file of your proxy's CA (-----BEGIN CERTIFICATE-----)",
        )
    return f"{path} ({count} certificates)"


def _index_token(settings: Settings, cwd: Path) -> str:
    """The token is there and a .netrc can carry it (it is not sent anywhere)."""
    credentials = index_credentials(settings, cwd)
    if credentials is None:  # pragma: no cover - only called with index_url set
        return "no index_url"
    credentials.check()
    return f"{credentials.describe()} for {index_netloc(settings.index_url)}"


def _build_context(settings: Settings, cwd: Path) -> str:
    context = resolve_context(settings, cwd)
    check_context(settings, cwd, context, choose_dockerfile(settings, cwd, context))
    return f"{context}: no key, token file or .env would be sent"


def _dockerfile(settings: Settings, cwd: Path, requirements: dict[str, Requirements]) -> str:
    path = choose_dockerfile(settings, cwd, resolve_context(settings, cwd))
    if path == template_path():
        return f"the built-in template ({path})"
    text = dockerfile_text(path)  # read as the build reads it
    if match := _SECRET_DECLARATION.search(text):
        raise SecurebuildError(
            f"{path} declares {match.group(0).strip()!r}, a secret as build arg or ENV ends up in"
            " the image history",
            hint="read it from a secret mount instead: RUN --mount=type=secret,id=NAME",
        )
    if "ssh-keyscan" in text:
        raise SecurebuildError(
            f"{path} runs ssh-keyscan, which trusts whatever host answers",
            hint="remove it: securebuild-tasks passes pinned known_hosts as a secret",
        )
    private = "r" in requirements and requirements["r"].ssh_hosts
    if private and "--mount=type=ssh" not in text:
        raise SecurebuildError(
            f"{path} has no RUN --mount=type=ssh step, but the requirements fetch over SSH",
            hint="fetch them in a RUN --mount=type=ssh step (see Dockerfile.template)",
        )
    if "--mount=type=ssh" in text:
        return f"{path} uses SSH forwarding and declares no secret"
    return f"{path} declares no secret (no SSH step, and the requirements need none)"
