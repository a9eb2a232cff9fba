"""Building an image: settings, then key source, then engine, in that order.

`plan_build` turns settings into checked paths and pinned host keys without
touching Docker or any key; `build_image` runs the plan with a key forwarded for
exactly the duration of the build. Tasks call these; tests call them directly.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import IO

from .agent import private_workdir, reap_stale_workdirs
from .engine import CommandBuilder, Engine, detect_engine, inspect_image, ping, run_streaming
from .errors import BuildError, HostKeyError, KeySourceError, SecurebuildError, SettingsError
from .hostkeys import default_known_hosts, explain_ssh_failure, select_known_hosts
from .keys import ForwardedKey, choose_key_source
from .requirements import Requirements, read_requirements
from .settings import Settings

TEMPLATE_NAME = "Dockerfile.template"


def template_path() -> Path:
    """The built-in Dockerfile template (inside the wheel, or the repository's)."""
    packaged = resources.files("securebuild_tasks") / TEMPLATE_NAME
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / TEMPLATE_NAME


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build needs, resolved and checked, with no secret in it."""

    settings: Settings
    context: Path
    dockerfile: Path
    requirements: Requirements
    known_hosts_text: str
    build_args: dict[str, str]
    secret_files: dict[str, Path]


@dataclass(frozen=True)
class BuildResult:
    """What a finished build produced."""

    image: str
    image_id: str
    size: int
    key_fingerprint: str
    key_source: str
    seconds: float


def _existing_file(value: str, base: Path, name: str, what: str) -> Path:
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise SettingsError(
            f"{what} {path} does not exist (setting {name})",
            hint=f"create it or fix securebuild.{name}",
        )
    return path


def plan_build(settings: Settings, cwd: Path) -> BuildPlan:
    """Resolve and check paths, requirements and pinned host keys."""
    context = Path(settings.context).expanduser()
    context = context if context.is_absolute() else cwd / context
    if not context.is_dir():
        raise SettingsError(
            f"build context {context} is not a directory", hint="fix securebuild.context"
        )
    if settings.dockerfile:
        dockerfile = _existing_file(settings.dockerfile, cwd, "dockerfile", "Dockerfile")
    elif (context / "Dockerfile").is_file():
        dockerfile = context / "Dockerfile"
    else:
        dockerfile = template_path()
    requirements = read_requirements(context / settings.requirements)
    known_hosts = (
        Path(settings.known_hosts).expanduser() if settings.known_hosts else default_known_hosts()
    )
    pinned = select_known_hosts(requirements.ssh_hosts, known_hosts)

    secret_files: dict[str, Path] = {}
    if settings.ca_bundle:
        secret_files["ca_bundle"] = _existing_file(
            settings.ca_bundle, cwd, "ca_bundle", "CA bundle"
        )
    if settings.pip_config:
        secret_files["pip_config"] = _existing_file(
            settings.pip_config, cwd, "pip_config", "pip config"
        )
    for secret_id, value in settings.secrets.items():
        secret_files[secret_id] = _existing_file(value, cwd, "secrets", f"secret {secret_id}")

    declared = set(re.findall(r"(?m)^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", _read(dockerfile)))
    build_args = {
        name: value
        for name, value in (
            ("BASE_IMAGE", settings.base_image),
            ("REQUIREMENTS", settings.requirements),
        )
        if name in declared
    }
    build_args.update(settings.build_args)
    return BuildPlan(settings, context, dockerfile, requirements, pinned, build_args, secret_files)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"cannot read Dockerfile {path} ({exc.__class__.__name__})",
            hint="check the file and securebuild.dockerfile",
        ) from None


def build_command(
    engine: Engine, plan: BuildPlan, key: ForwardedKey, known_hosts_file: Path
) -> list[str]:
    """The docker argv for ``plan``: the key travels only as ``--ssh default=SOCKET``."""
    s = plan.settings
    progress = "plain" if s.progress == "auto" else s.progress
    secrets = [f"id=known_hosts,src={known_hosts_file}"]
    secrets += [f"id={sid},src={path}" for sid, path in plan.secret_files.items()]
    command = (
        CommandBuilder(*engine.build_prefix())
        .option("--progress", progress)
        .option("--file", str(plan.dockerfile))
        .option("--tag", s.image_ref)
        .option("--target", s.target)
        .option("--platform", s.platform)
        .option("--network", s.network)
        .option("--ssh", f"default={key.socket}")
        .repeated("--secret", secrets)
        .repeated("--build-arg", [f"{k}={v}" for k, v in plan.build_args.items()])
        .flag("--no-cache", s.no_cache)
        .flag("--load", engine.mode == "buildx")
        .add(str(plan.context))
    )
    return command.argv


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while a key is forwarded, so cleanup runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_image(settings: Settings, *, cwd: Path, out: IO[str] | None = None) -> BuildResult:
    """Build the image; raise a `SecurebuildError` with a next step on failure."""
    out = out or sys.stderr
    reap_stale_workdirs()
    plan = plan_build(settings, cwd)
    source = choose_key_source(settings)
    started = time.monotonic()
    with _sigterm_as_interrupt(), private_workdir() as workdir:
        known_hosts_file = workdir / "known_hosts"
        known_hosts_file.write_text(plan.known_hosts_text, encoding="utf-8")
        with source.forward(workdir) as key:
            engine = detect_engine(settings.docker, settings.builder)
            ping(engine)
            out.write(
                f"securebuild: building {settings.image_ref} with {engine.mode} "
                f"({engine.docker}), key {key.fingerprint} from {key.source}\n"
            )
            out.flush()
            argv = build_command(engine, plan, key, known_hosts_file)
            try:
                run_streaming(
                    argv, env=engine.child_env(), out=out, passthrough=settings.progress == "tty"
                )
            except BuildError as exc:
                raise _explain(exc, plan) from None
    info = inspect_image(settings.image_ref)
    return BuildResult(
        settings.image_ref,
        info.id,
        info.size,
        key.fingerprint,
        key.source,
        time.monotonic() - started,
    )


def _explain(exc: BuildError, plan: BuildPlan) -> SecurebuildError:
    explained = explain_ssh_failure(exc.output, plan.requirements.ssh_hosts)
    if explained is None:
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
