"""The Docker engine adapter: which client can run BuildKit, and running builds.

The docker SDK cannot drive BuildKit (no ``--ssh``, no secret mounts), so
builds go through the docker CLI, always as an argument list built by
`CommandBuilder` and run by `run_streaming`: no shell ever sees a user value.

The SDK serves what the engine API serves where the tool lists, removes or
diagnoses (`clean`, `doctor`, a failed ping). A build's own path stays on the
CLI it needs anyway: importing the SDK takes longer than a whole cached
rebuild (see benchmarks/), so one ``docker version`` call both finds the
client and proves the daemon answers, and the built image is inspected with
one request on the engine's Unix socket (or by the CLI, for any other kind of
endpoint).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import BuildError, EngineError
from .settings import INDEX_TOKEN_ENV

#: docker CLI versions from 23 on route ``docker build`` through buildx.
_LAST_CLASSIC_BUILDKIT_MAJOR = 22


@dataclass(frozen=True)
class Engine:
    """A docker client that can run BuildKit builds, and how."""

    docker: str
    mode: str  # "buildx" or "classic"
    client_version: str
    #: The daemon's version when it answered while the client was detected
    #: (then `ping` needs no second call), else empty.
    server_version: str = field(default="", compare=False)

    def build_prefix(self) -> list[str]:
        """The argv start of a build with this client."""
        return [self.docker, "buildx", "build"] if self.mode == "buildx" else [self.docker, "build"]

    def child_env(self) -> dict[str, str]:
        """Environment for the docker child: the user's, minus index token, plus BuildKit.

        The user's agent is dropped too (the build gets its key through ``--ssh``
        alone), except for an ``ssh://`` engine: the CLI's own ssh to the engine
        host authenticates with it, as it does when the user runs docker.
        """
        dropped = {INDEX_TOKEN_ENV}
        try:
            over_ssh = endpoint(self.docker).startswith("ssh://")
        except EngineError:
            over_ssh = False
        if not over_ssh:
            dropped.add("SSH_AUTH_SOCK")
        env = {k: v for k, v in os.environ.items() if k not in dropped}
        if self.mode == "classic":
            env["DOCKER_BUILDKIT"] = "1"
        return env


class CommandBuilder:
    """Builds one command line as a list; values are never joined into a string."""

    def __init__(self, *start: str) -> None:
        self.argv: list[str] = list(start)

    def add(self, *parts: str) -> CommandBuilder:
        """Append plain arguments."""
        self.argv.extend(parts)
        return self

    def option(self, name: str, value: str | None) -> CommandBuilder:
        """Append ``name value`` when value is non-empty."""
        if value:
            self.argv.extend([name, value])
        return self

    def repeated(self, name: str, values: Iterable[str]) -> CommandBuilder:
        """Append ``name value`` once per value."""
        for value in values:
            self.option(name, value)
        return self

    def flag(self, name: str, on: bool) -> CommandBuilder:
        """Append ``name`` when on."""
        if on:
            self.argv.append(name)
        return self


def _docker_candidates(configured: str) -> list[str]:
    if configured:
        found = shutil.which(configured) or (configured if Path(configured).is_file() else None)
        if found is None:
            raise EngineError(
                f"docker binary {configured!r} was not found",
                hint="fix securebuild.docker, or leave it empty to search PATH",
            )
        return [found]
    seen: set[str] = set()
    candidates: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which("docker", path=directory) if directory else None
        if path and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            candidates.append(path)
    if not candidates:
        raise EngineError(
            "no docker client is installed",
            hint="install Docker Desktop or Docker Engine with the buildx plugin",
        )
    return candidates


_Started = list["subprocess.Popen[str] | OSError"]


def _start_queries(argvs: list[list[str]]) -> _Started:
    """Start a few short docker CLI queries at once: each costs the CLI's start-up time."""
    started: _Started = []
    for argv in argvs:
        try:
            started.append(
                subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    # A socket path or a message need not be UTF-8.
                    encoding="utf-8",
                    errors="replace",
                )
            )
        except OSError as exc:
            started.append(exc)
    return started


def _collect(started: _Started) -> list[tuple[int, str]]:
    """Each started query's exit code and what it printed."""
    results: list[tuple[int, str]] = []
    for process in started:
        if isinstance(process, OSError):
            results.append((127, process.strerror or process.__class__.__name__))
            continue
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            results.append((127, "no answer in 30 s"))
            continue
        results.append((process.returncode, (out or err).strip()))
    return results


def _probe(argv: list[str]) -> tuple[int, str]:
    """One short docker CLI query: its exit code and what it printed."""
    return _collect(_start_queries([argv]))[0]


#: Client version, and the server's when the daemon answers (empty otherwise).
_VERSION_FORMAT = "{{.Client.Version}}|{{if .Server}}{{.Server.Version}}{{end}}"


class EngineProbe:
    """`detect_engine`, started early: the first client's queries run while the caller plans.

    A docker CLI query costs the client's start-up (50 to 100 ms); a build
    starts them before it reads its inputs and collects them when it needs the
    engine, so the two overlap. Errors (no client) are kept until then, so a
    problem with the inputs is still reported first. Use it as a context
    manager: no query outlives the caller.
    """

    def __init__(self, docker: str = "", builder: str = "auto") -> None:
        self._builder = builder
        self._candidates: list[str] = []
        self._started: _Started = []
        self._error: EngineError | None = None
        self._engine: Engine | None = None
        try:
            self._candidates = _docker_candidates(docker)
        except EngineError as exc:
            self._error = exc
        else:
            self._started = _start_queries(self._queries(self._candidates[0]))

    def __enter__(self) -> EngineProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop and reap queries that were started but never collected."""
        started, self._started = self._started, []
        for process in started:
            if isinstance(process, subprocess.Popen) and process.poll() is None:
                process.kill()
            if isinstance(process, subprocess.Popen):
                process.communicate()

    def _queries(self, candidate: str) -> list[list[str]]:
        queries = [[candidate, "version", "--format", _VERSION_FORMAT]]
        if self._builder in ("auto", "buildx"):
            queries.append([candidate, "buildx", "version"])
        return queries

    def engine(self) -> Engine:
        """The first docker client that can build (see `detect_engine`)."""
        if self._engine is not None:
            return self._engine
        if self._error is not None:
            raise self._error
        builder = self._builder
        refusals: list[str] = []
        for index, candidate in enumerate(self._candidates):
            if index == 0:
                started, self._started = self._started, []
            else:
                started = _start_queries(self._queries(candidate))
            (_, out), *buildx = _collect(started)
            first = out.splitlines()[0].strip() if out else ""
            version, separator, server = first.partition("|")
            if not separator and not re.match(r"v?\d+\.\d+", first):
                # Not the version line asked for (even without a daemon the
                # client prints its own half): what it said instead.
                said = f" ({first[:160]})" if first else ""
                refusals.append(f"{candidate} does not run{said}")
                continue
            version = version.strip() or "unknown"
            server = server.strip()
            if buildx and buildx[0][0] == 0:
                self._engine = Engine(candidate, "buildx", version, server)
                return self._engine
            if builder in ("auto", "classic") and _classic_buildkit(version):
                self._engine = Engine(candidate, "classic", version, server)
                return self._engine
            refusals.append(
                f"{candidate} {version} has no buildx plugin" + _classic_refusal(version, builder)
            )
        if all(" does not run" in refusal for refusal in refusals):
            hint = "run `docker version` to see what is wrong with the client and its context"
        else:
            hint = "install the docker buildx plugin, or point securebuild.docker at a client"
            hint += " that has it"
        raise EngineError(
            "no docker client here can run BuildKit builds (" + "; ".join(refusals) + ")",
            hint=hint,
        )


def docker_client(docker: str = "") -> str:
    """The docker CLI for work that needs no BuildKit (inspect, history, save, and
    the SDK's endpoint): the configured one, else the first on PATH."""
    return _docker_candidates(docker)[0]


def detect_engine(docker: str = "", builder: str = "auto") -> Engine:
    """Find a docker client that can run BuildKit builds with ``--ssh``.

    With ``docker`` empty, every docker client on PATH is tried in order, so a
    newer client without the buildx plugin does not hide an older one that can
    build. ``builder`` forces ``buildx`` or ``classic``.
    """
    with EngineProbe(docker, builder) as probe:
        return probe.engine()


def _classic_refusal(version: str, builder: str) -> str:
    if builder == "buildx":
        return ""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match and (int(match.group(1)), int(match.group(2))) < (20, 10):
        return " and is older than 20.10, the first with RUN --mount=type=ssh built in"
    return " and is too new for DOCKER_BUILDKIT=1"


def _classic_buildkit(version: str) -> bool:
    """Clients 20.10 to 22.x run BuildKit with DOCKER_BUILDKIT=1 and understand --ssh and
    RUN --mount without a `# syntax=` line; older ones do not, newer ones need buildx."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    return (major, minor) >= (20, 10) and major <= _LAST_CLASSIC_BUILDKIT_MAJOR


class _NoSDK(EngineError):
    """The CLI's endpoint is one the SDK cannot reach the same way (a TLS context)."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"the docker context points at {host} with TLS material the docker SDK cannot use",
            hint="set DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH for that daemon",
        )


def endpoint(docker_cli: str) -> str:
    """Where the docker CLI sends requests: DOCKER_HOST, else its current context's host.

    The SDK alone reads only DOCKER_HOST, so with a docker context it would
    talk to another daemon than the build; asking the CLI keeps both on one.
    """
    known = _endpoint_without_cli()
    if known is not None:
        return known
    code, out = _probe(
        [
            docker_cli,
            "context",
            "inspect",
            "--format",
            "{{.Endpoints.docker.Host}} {{len .TLSMaterial}}",
        ]
    )
    host, _, tls = out.strip().partition(" ")
    if code != 0 or not host or "://" not in host:
        # Falling back to the default socket would reach another daemon than
        # the CLI (and the build) would.
        said = out.strip().splitlines()[0][:160] if out.strip() else f"exit code {code}"
        raise EngineError(
            f"the docker context {_context_name()} cannot be read ({said})",
            hint="check `docker context ls`, or set DOCKER_CONTEXT / DOCKER_HOST",
        )
    if tls.strip() not in ("", "0"):
        raise _NoSDK(host)
    return host


def _endpoint_without_cli() -> str | None:
    """DOCKER_HOST, or "" for the default context (the default socket); None for
    a named context, whose host only ``docker context inspect`` can tell."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if _context_name() == "default":
        return ""
    return None


def _context_name() -> str:
    """The docker context the CLI uses: DOCKER_CONTEXT, else the config's currentContext.

    Read from the CLI's own config file, so the common case (no context chosen)
    costs no ``docker context inspect`` call.
    """
    if os.environ.get("DOCKER_CONTEXT"):
        return os.environ["DOCKER_CONTEXT"]
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "default"
    name = config.get("currentContext") if isinstance(config, dict) else None
    return name if isinstance(name, str) and name else "default"


def sdk_client(docker_cli: str) -> Any:
    """A docker SDK client for the daemon ``docker_cli`` talks to."""
    import docker

    host = endpoint(docker_cli)
    # use_ssh_client: the SDK runs the system's ssh like the CLI does (its config,
    # agent and known_hosts), instead of paramiko's own client and host key policy.
    over_ssh = host.startswith("ssh://")
    if not host or os.environ.get("DOCKER_HOST"):
        return docker.from_env(timeout=30, use_ssh_client=over_ssh)
    return docker.DockerClient(base_url=host, timeout=30, use_ssh_client=over_ssh)


def ping(engine: Engine) -> None:
    """Check that the daemon answers; raise `EngineError` saying where it looked."""
    if engine.server_version:
        return  # it answered `docker version` while the client was detected
    try:
        where = endpoint(engine.docker) or "the default socket"
    except _NoSDK as tls:
        where = tls.host
    try:
        client = sdk_client(engine.docker)
        try:
            client.ping()
            return
        finally:
            client.close()
    except _NoSDK:
        sdk_error = ""  # no transport the SDK has: the CLI alone can tell
    except Exception as exc:  # the SDK raises many kinds; the CLI gets a second say
        sdk_error = exc.__class__.__name__
    # A TLS context, or an SDK without an optional transport: the CLI has a say.
    code, said = _probe([engine.docker, "info", "--format", "{{.ServerVersion}}"])
    if code == 0:
        return
    # The CLI's own reason where the SDK could not try (its last line, cut short).
    why = sdk_error or (said.strip().splitlines() or [""])[-1][:160]
    raise EngineError(
        f"cannot reach the Docker daemon at {where}" + (f" ({why})" if why else ""),
        hint="start Docker (Docker Desktop, or `sudo systemctl start docker`), or set DOCKER_HOST",
    )


@dataclass(frozen=True)
class ImageInfo:
    """What the engine says about a built image."""

    id: str
    size: int
    tags: tuple[str, ...] = field(default_factory=tuple)


def _inspect(ref: str, engine_docker: str) -> dict[str, Any]:
    """``ref``'s inspect answer: from the engine's socket, else the CLI (which
    raises `EngineError` when the engine has no such image)."""
    socket_path = engine_socket()
    attrs = inspect_over_socket(socket_path, ref) if socket_path else None
    return attrs or inspect_with_cli(engine_docker, ref)


def inspect_image(ref: str, engine_docker: str = "docker") -> ImageInfo:
    """Return id and size of a freshly built ``ref``: from the engine's socket, else the CLI."""
    try:
        attrs = _inspect(ref, engine_docker)
        if not isinstance(attrs.get("Id"), str):
            raise EngineError(f"image {ref} has no id")
    except EngineError:
        raise EngineError(
            f"image {ref} was not found after the build",
            hint="check that the build loads into the daemon (buildx: a docker or"
            " docker-container builder with --load)",
        ) from None
    return ImageInfo(attrs["Id"], int(attrs.get("Size", 0)), tuple(attrs.get("RepoTags") or ()))


#: Where the docker CLI finds the engine with no DOCKER_HOST and no context (not Windows).
DEFAULT_SOCKET = "/var/run/docker.sock"

#: A reference that can go into a request path as it is (docker's reference grammar).
_PLAIN_REFERENCE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._/:@-]*\Z")


def engine_socket() -> str:
    """The Unix socket the docker CLI talks to, when that is known without running it.

    DOCKER_HOST ``unix://PATH``, or the default socket when neither DOCKER_HOST
    nor a docker context points elsewhere (the CLI's own order). Empty for
    anything else (TCP, TLS, ``ssh://``, a named pipe, a context): ask the CLI.
    """
    host = _endpoint_without_cli()
    if host == "" and os.name != "nt":
        return DEFAULT_SOCKET
    return host[len("unix://") :] if host and host.startswith("unix://") else ""


def inspect_over_socket(path: str, ref: str) -> dict[str, Any] | None:
    """``GET /images/REF/json`` on the engine's Unix socket; None if it does not answer so.

    After a build this replaces a ``docker image inspect`` run: the CLI's
    start-up costs 30 to 50 ms, about a tenth of a cached rebuild. The request
    is written out by hand because the alternatives cost most of what it saves
    (http.client imports ssl, about 10 ms; the docker SDK over 100 ms): one
    HTTP/1.0 GET, which the engine answers with a plain body before closing
    the connection. Any other answer (not found, an error, a proxy in the way)
    returns None, and the caller asks the CLI, which says what is wrong.
    """
    if not _PLAIN_REFERENCE.match(ref):
        return None
    import socket

    request = f"GET /images/{ref}/json HTTP/1.0\r\nHost: docker\r\nConnection: close\r\n\r\n"
    received = head = body = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(30)
            connection.connect(path)
            connection.sendall(request.encode("ascii"))
            # Until the engine closes, or the body is as long as the header says.
            while chunk := connection.recv(65536):
                received += chunk
                head, separator, body = received.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
                if separator and length and len(body) >= int(length.group(1)):
                    break
    except OSError:
        return None
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        return None
    try:
        found = json.loads(body)
    except ValueError:
        return None
    return found if isinstance(found, dict) and isinstance(found.get("Id"), str) else None


def inspect_with_cli(docker: str, ref: str) -> dict[str, Any]:
    """``docker image inspect`` through the CLI (which reads docker contexts)."""
    done = subprocess.run(
        [docker, "image", "inspect", ref],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
        stdin=subprocess.DEVNULL,
    )
    found: Any = None
    if done.returncode == 0:
        # A client may print warnings before the JSON: read from the first "[".
        start = done.stdout.find("[")
        with contextlib.suppress(ValueError):
            found = json.loads(done.stdout[start:]) if start >= 0 else None
    first = found[0] if isinstance(found, list) and found else None
    # What callers read, of the kind they read it as, where given.
    if (
        not isinstance(first, dict)
        or not isinstance(first.get("Id", ""), str)
        or not isinstance(first.get("Size", 0), int)
        or not isinstance(first.get("RepoTags") or [], list)
        or not isinstance(first.get("Config", {}), (dict, type(None)))
    ):
        raise EngineError(
            f"cannot inspect image {ref}",
            hint="check that it exists (`docker image ls`) in the same docker context",
        )
    return first


def image_user(engine: Engine, ref: str, platform: str = "", out: IO[str] | None = None) -> str:
    """The user ``ref`` runs as (its config's ``User``; "" is root), pulled first if
    the engine does not have it.

    BuildKit gives a Dockerfile no way to read a base image's config back, so the
    template's build steps, which must run as root, cannot restore the user
    themselves: the tool reads it here and passes it as a build arg. A pull is
    what the build would do next anyway; the build then finds the image local.
    It pulls for this machine's platform first even when the build targets
    another: a base image's user is the same on every platform, and a pull for
    another would retag the engine's local image to that platform. Only an
    image this machine's platform lacks is pulled for ``platform``.
    """

    def inspect() -> dict[str, Any] | None:
        with contextlib.suppress(EngineError):
            return _inspect(ref, engine.docker)
        return None

    attrs = inspect()
    if attrs is None:
        (out or sys.stderr).write(f"securebuild: pulling {ref} (the base image)\n")

        def pull(*options: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [engine.docker, "pull", "--quiet", *options, ref],
                env=engine.child_env(),
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                check=False,
                stdin=subprocess.DEVNULL,
            )

        done = pull()
        if done.returncode != 0 and platform and "no matching manifest" in done.stderr:
            done = pull("--platform", platform)
        attrs = inspect() if done.returncode == 0 else None
        if attrs is None:
            said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            raise EngineError(
                f"cannot pull the base image {ref}"
                + (f" ({said[-1].removeprefix('Error response from daemon: ')})" if said else ""),
                hint="check the base_image setting (or the Dockerfile's ARG BASE_IMAGE), and"
                " `docker login` to its registry if it is private; a builder that reaches"
                " registries this engine cannot: set BASE_IMAGE_USER in build_args",
            )
    config = attrs.get("Config") or {}
    user = config.get("User") if isinstance(config, dict) else None
    return user if isinstance(user, str) else ""


#: Seconds an interrupted `docker build` has to cancel the build and exit.
STOP_GRACE = 20.0


def _stop(process: subprocess.Popen[str]) -> None:
    """Ask ``process`` to stop (docker then cancels the build), wait up to
    `STOP_GRACE` seconds, and kill it if it is still running. A second Ctrl-C or
    SIGTERM while waiting kills it at once: the child never outlives the tool
    (Popen's own exit gives up waiting after a quarter second on Ctrl-C)."""
    try:
        process.terminate()
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise


def run_streaming(
    argv: list[str],
    *,
    env: Mapping[str, str],
    out: IO[str] | None = None,
    tail_lines: int = 400,
    passthrough: bool = False,
    on_interrupt: Callable[[], None] | None = None,
) -> None:
    """Run ``argv`` (never through a shell), streaming its output to ``out``.

    On failure raise `BuildError` holding the command, exit code and the tail
    of the output. With ``passthrough`` the child writes to the terminal itself
    (BuildKit's tty progress) and no tail is kept. On Ctrl-C (or a signal the
    caller turned into one) ``on_interrupt`` runs first, before waiting for
    docker to cancel the build: it revokes the forwarded key. The child is
    gone, killed if need be, when the interrupt reaches the caller.
    """
    out = out or sys.stderr
    kept: collections.deque[str] = collections.deque(maxlen=tail_lines)
    with subprocess.Popen(
        argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=None if passthrough else subprocess.PIPE,
        stderr=None if passthrough else subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    ) as process:
        try:
            if process.stdout is not None:
                for line in process.stdout:
                    kept.append(line)
                    out.write(line)
                    out.flush()
            code = process.wait()
        except BaseException:
            # Ctrl-C or SIGTERM: take the key away first, then let docker
            # cancel the build before the caller cleans up. Another interrupt
            # while the key is taken away kills docker at once.
            try:
                if on_interrupt is not None:
                    on_interrupt()
            except BaseException:
                process.kill()
                process.wait()
                raise
            _stop(process)
            raise
    tail = "".join(kept)
    if code != 0:
        raise BuildError(
            f"docker build failed with exit code {code}",
            command=argv,
            returncode=code,
            output=tail,
        )
