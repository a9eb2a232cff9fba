"""The engine adapter: finding a BuildKit-capable client, and building argv lists."""

from __future__ import annotations

import io
import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from securebuild_tasks import build
from securebuild_tasks.build import BuildPlan, build_command, build_image
from securebuild_tasks.engine import (
    DEFAULT_SOCKET,
    CommandBuilder,
    Engine,
    EngineProbe,
    detect_engine,
    endpoint,
    engine_socket,
    inspect_image,
)
from securebuild_tasks.errors import EngineError, SecurebuildError
from securebuild_tasks.keys import ForwardedKey
from securebuild_tasks.requirements import parse_requirements
from securebuild_tasks.settings import Settings
from tests.support.cli import stand_in_docker
from tests.support.procs import wait_for


def _fake_docker(directory: Path, version: str, *, buildx: bool) -> Path:
    return stand_in_docker(
        directory,
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then echo {version}; exit 0; fi\n'
        f'if [ "$1" = buildx ]; then {"echo v0.12; exit 0" if buildx else "exit 1"}; fi\n'
        "exit 1\n",
    )


def test_first_client_without_buildkit_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new client without buildx first on PATH does not hide an older classic one."""
    new = _fake_docker(tmp_path / "new", "28.2.2", buildx=False)
    old = _fake_docker(tmp_path / "old", "20.10.24", buildx=False)
    monkeypatch.setenv("PATH", f"{new.parent}:{old.parent}")
    engine = detect_engine()
    assert engine == Engine(str(old), "classic", "20.10.24")


def test_buildx_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client with the buildx plugin builds with `docker buildx build`."""
    docker = _fake_docker(tmp_path / "bin", "27.1.0", buildx=True)
    monkeypatch.setenv("PATH", str(docker.parent))
    engine = detect_engine()
    assert engine.mode == "buildx"
    assert engine.build_prefix() == [str(docker), "buildx", "build"]
    assert "DOCKER_BUILDKIT" not in engine.child_env()


def test_forcing_classic_on_new_client_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """builder=classic on a client of 23 or later explains why it cannot work."""
    docker = _fake_docker(tmp_path / "bin", "28.2.2", buildx=True)
    with pytest.raises(EngineError, match="too new for DOCKER_BUILDKIT=1"):
        detect_engine(str(docker), "classic")


def test_configured_binary_must_exist(tmp_path: Path) -> None:
    """A docker path that does not exist is named."""
    with pytest.raises(EngineError, match="nowhere/docker"):
        detect_engine(str(tmp_path / "nowhere" / "docker"))


def test_command_builder_keeps_values_whole() -> None:
    """Values with spaces, quotes and $() stay single argv items, never shell text."""
    hostile = "a b; rm -rf / $(id) 'x\""
    argv = (
        CommandBuilder("docker", "build")
        .option("--tag", hostile)
        .option("--target", "")
        .repeated("--secret", ["id=a,src=/x y"])
        .flag("--load", False)
        .add(".")
        .argv
    )
    assert argv == ["docker", "build", "--tag", hostile, "--secret", "id=a,src=/x y", "."]


def test_build_command_passes_key_only_as_agent_socket(tmp_path: Path) -> None:
    """The key reaches docker only as --ssh default=SOCKET; no build arg mentions it."""
    reqs = parse_requirements("pkg @ git+ssh://git@h/x.git@v1\n", tmp_path / "r.txt")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nARG SSH_IDENTITY\n")
    plan = BuildPlan(
        settings=Settings(network="host", target="runtime"),
        context=tmp_path,
        dockerfile=tmp_path / "Dockerfile",
        requirements=reqs,
        # As the planners leave it when the Dockerfile declares SSH_IDENTITY.
        build_args={"BASE_IMAGE": "python:3.12-slim", "SSH_IDENTITY": ""},
        secret_files={},
        target="runtime",
        network="host",
    )
    key = ForwardedKey(str(tmp_path / "agent.sock"), "SHA256:abc", "file")
    engine = Engine("/usr/bin/docker", "classic", "20.10.24")
    secret_paths = {
        "known_hosts": tmp_path / "known_hosts",
        "pip_config": tmp_path / "pip.conf",
    }
    argv = build_command(engine, plan, key, secret_paths)
    assert argv[:2] == ["/usr/bin/docker", "build"]
    assert argv[argv.index("--ssh") + 1] == f"default={tmp_path / 'agent.sock'}"
    secrets = [argv[i + 1] for i, a in enumerate(argv) if a == "--secret"]
    assert secrets == [
        f"id=known_hosts,src={tmp_path / 'known_hosts'}",
        f"id=pip_config,src={tmp_path / 'pip.conf'}",
    ]
    build_args = [argv[i + 1] for i, a in enumerate(argv) if a == "--build-arg"]
    # The fingerprint (public) keys the private step's cache to this key.
    assert build_args == ["BASE_IMAGE=python:3.12-slim", "SSH_IDENTITY=SHA256:abc"]
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[-1] == str(tmp_path)


def test_clients_before_20_10_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 19.03 client cannot RUN --mount=type=ssh without a syntax line: refused, with why."""
    docker = _fake_docker(tmp_path / "bin", "19.03.15", buildx=False)
    monkeypatch.setenv("PATH", str(docker.parent))
    with pytest.raises(EngineError, match=r"older than 20\.10"):
        detect_engine()


def _slow_docker(directory: Path) -> tuple[Path, Path]:
    """A docker that logs each start with its pid, then answers `version` only after a minute."""
    log = directory / "started.log"
    script = stand_in_docker(
        directory,
        f'#!/bin/sh\necho "$$ $1" >> {log}\n'
        'if [ "$1" = version ]; then exec sleep 60; fi\nexit 1\n',
    )
    return script, log


def _started(log: Path) -> dict[str, int]:
    lines = log.read_text().splitlines() if log.exists() else []
    return {line.split()[1]: int(line.split()[0]) for line in lines}


def test_probe_starts_at_once_and_reports_when_asked(tmp_path: Path) -> None:
    """The queries run from construction on; the engine is what detect_engine finds."""
    docker = _fake_docker(tmp_path / "bin", "27.1.0", buildx=True)
    log = tmp_path / "bin" / "calls.log"
    docker.write_text(docker.read_text().replace("#!/bin/sh\n", f'#!/bin/sh\necho "$1" >> {log}\n'))
    with EngineProbe(str(docker)) as probe:
        wait_for(lambda: log.exists() and len(log.read_text().split()) == 2, "both queries")
        assert sorted(log.read_text().split()) == ["buildx", "version"]
        assert probe.engine() == Engine(str(docker), "buildx", "27.1.0")
        assert probe.engine() is probe.engine()  # asked twice, queried once
    assert len(log.read_text().split()) == 2


def test_probe_keeps_its_error_until_asked(tmp_path: Path) -> None:
    """A missing docker does not pre-empt the caller's own checks: it is raised by engine()."""
    probe = EngineProbe(str(tmp_path / "nowhere" / "docker"))
    with probe, pytest.raises(EngineError, match="nowhere/docker"):
        probe.engine()


def test_probe_left_unasked_leaves_no_process(tmp_path: Path) -> None:
    """Closed before its answer (the caller failed first): every query is stopped and reaped."""
    docker, log = _slow_docker(tmp_path / "bin")
    with EngineProbe(str(docker), "classic"):
        wait_for(lambda: "version" in _started(log), "the version query")
        pid = _started(log)["version"]
        assert Path(f"/proc/{pid}").exists()
    assert not Path(f"/proc/{pid}").exists()  # killed and waited for, no zombie


def test_bad_input_is_reported_before_the_engine_and_stops_its_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_image on a project without requirements: that is the error, and no docker is left."""
    docker, log = _slow_docker(tmp_path / "bin")
    project = tmp_path / "project"
    project.mkdir()
    real_plan = build.plan_build

    def plan_once_the_query_runs(settings: Settings, cwd: Path) -> BuildPlan:
        wait_for(lambda: "version" in _started(log), "the version query")
        return real_plan(settings, cwd)

    monkeypatch.setattr(build, "plan_build", plan_once_the_query_runs)
    with pytest.raises(SecurebuildError, match="requirements") as raised:
        build_image(Settings(docker=str(docker), builder="classic"), cwd=project)
    assert not isinstance(raised.value, EngineError)
    assert not Path(f"/proc/{_started(log)['version']}").exists()  # stopped and reaped


# ---------------------------------------------------------------------------
# Inspecting the built image: one request on the engine's socket, else the CLI.


class _EngineAPI(socketserver.ThreadingUnixStreamServer):
    """A Unix-socket HTTP server answering ``GET /images/REF/json`` from ``images``."""

    daemon_threads = True

    def __init__(self, path: Path, images: dict[str, dict[str, object]]) -> None:
        self.images = images
        self.requests: list[str] = []
        super().__init__(str(path), _EngineHandler)


class _EngineHandler(BaseHTTPRequestHandler):
    server: _EngineAPI

    def do_GET(self) -> None:
        self.server.requests.append(self.requestline)
        ref = self.path.removeprefix("/images/").removesuffix("/json")
        found = self.server.images.get(ref)
        body = json.dumps(found or {"message": f"No such image: {ref}"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine_api(private_tmpdir: Path) -> Iterator[_EngineAPI]:
    server = _EngineAPI(private_tmpdir / "docker.sock", {})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _inspecting_docker(directory: Path, answer: dict[str, object]) -> Path:
    """A docker CLI whose ``image inspect`` prints ``answer``; anything else fails."""
    return stand_in_docker(
        directory,
        "#!/bin/sh\n"
        f"if [ \"$1 $2\" = 'image inspect' ]; then echo '{json.dumps([answer])}'; exit 0; fi\n"
        "exit 1\n",
    )


def test_built_image_is_inspected_on_the_engine_socket(
    engine_api: _EngineAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DOCKER_HOST unix://: the answer comes from the socket; no docker CLI runs."""
    engine_api.images["team/app:1.2"] = {"Id": "sha256:" + "a" * 64, "Size": 1234,
                                         "RepoTags": ["team/app:1.2"]}  # fmt: skip
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_api.server_address}")
    info = inspect_image("team/app:1.2", str(tmp_path / "no-such-docker"))
    assert (info.id, info.size, info.tags) == ("sha256:" + "a" * 64, 1234, ("team/app:1.2",))
    assert engine_api.requests == ["GET /images/team/app:1.2/json HTTP/1.0"]


class _KeepAliveHandler(socketserver.StreamRequestHandler):
    """Answers with a Content-Length, then holds the connection until the client closes it."""

    def handle(self) -> None:
        self.rfile.readline()
        body = json.dumps({"Id": "sha256:" + "e" * 64, "Size": 7}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        self.wfile.write(head + body)
        self.wfile.flush()
        while self.rfile.read(1):  # the client's close ends this
            pass


def test_inspect_reads_as_much_as_the_answer_says_without_waiting_for_a_close(
    private_tmpdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy that keeps the connection open: the body's length ends the read, no CLI runs."""
    server = socketserver.ThreadingUnixStreamServer(
        str(private_tmpdir / "proxy.sock"), _KeepAliveHandler
    )
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{server.server_address}")
        info = inspect_image("app:1", str(tmp_path / "no-such-docker"))
    finally:
        server.shutdown()
        server.server_close()
    assert (info.id, info.size) == ("sha256:" + "e" * 64, 7)


def test_inspect_asks_the_cli_when_the_socket_does_not_answer_with_the_image(
    engine_api: _EngineAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404, a socket nobody listens on, or a TCP host: the CLI is asked, and its answer used."""
    docker = _inspecting_docker(tmp_path, {"Id": "sha256:" + "c" * 64, "Size": 99})
    hosts = [
        f"unix://{engine_api.server_address}",  # answers 404
        f"unix://{tmp_path / 'nobody.sock'}",
        "tcp://127.0.0.1:1",
    ]
    for host in hosts:
        monkeypatch.setenv("DOCKER_HOST", host)
        info = inspect_image("app:latest", str(docker))
        assert (info.id, info.size) == ("sha256:" + "c" * 64, 99), host
    assert engine_api.requests == ["GET /images/app:latest/json HTTP/1.0"]


def test_inspect_refuses_to_put_an_odd_reference_in_a_request(
    engine_api: _EngineAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reference outside docker's grammar never reaches the request line."""
    docker = _inspecting_docker(tmp_path, {"Id": "sha256:" + "d" * 64, "Size": 1})
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_api.server_address}")
    assert inspect_image("app:1 HTTP/1.0\r\nX: y", str(docker)).id == "sha256:" + "d" * 64
    assert engine_api.requests == []


def test_engine_socket_follows_the_clis_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DOCKER_HOST first, then a docker context (ask the CLI), then the default socket."""
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    assert engine_socket() == "/run/user/1000/docker.sock"
    monkeypatch.setenv("DOCKER_CONTEXT", "remote")
    assert engine_socket() == "/run/user/1000/docker.sock"  # DOCKER_HOST wins, as in the CLI
    for other in ("tcp://10.0.0.2:2376", "ssh://builder@10.0.0.2"):
        monkeypatch.setenv("DOCKER_HOST", other)
        assert engine_socket() == ""
    monkeypatch.delenv("DOCKER_HOST")
    assert engine_socket() == ""  # a context: only the CLI knows its endpoint
    monkeypatch.delenv("DOCKER_CONTEXT")
    assert engine_socket() == DEFAULT_SOCKET
    (config / "config.json").write_text(json.dumps({"currentContext": "colima"}))
    assert engine_socket() == ""


@pytest.mark.parametrize(
    ("script", "said"),
    [
        # The CLI cannot even start: its message, not a "version".
        ('echo "context \\"nosuch\\": context not found" >&2; exit 1', "context not found"),
        ("", "Permission denied"),
    ],
)
def test_a_client_that_does_not_run_is_said_so(tmp_path: Path, script: str, said: str) -> None:
    """What a failing client printed is reported as why it does not run, never read
    as its version (which would send the user off to install buildx)."""
    docker = stand_in_docker(tmp_path, f"#!/bin/sh\n{script}\n")
    if not script:
        docker.chmod(0o644)
    with pytest.raises(EngineError) as info:
        detect_engine(str(docker))
    assert f"{docker} does not run (" in info.value.message
    assert said in info.value.message
    assert "buildx" not in info.value.line()


def test_an_unreadable_docker_context_is_an_error_not_the_default_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK must reach the daemon the CLI reaches: a context the CLI cannot read
    is one line, not a quiet fall back to the default socket."""
    docker = stand_in_docker(
        tmp_path, '#!/bin/sh\necho "context \\"nosuch\\": context not found" >&2\nexit 1\n'
    )
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "nosuch")
    with pytest.raises(EngineError, match=r"docker context nosuch cannot be read \(context "):
        endpoint(str(docker))


@pytest.mark.parametrize(
    "printed",
    [
        '[{"Id": "sha256:ab", "Size": null}]',
        '[{"Id": "sha256:ab", "Config": []}]',
        "[1]",
        '[{"Id": 5}]',
        '[{"Id": "sha256:ab", "RepoTags": "x"}]',
        "not json",
    ],
)
def test_an_inspect_answer_that_is_no_image_is_one_error(tmp_path: Path, printed: str) -> None:
    """Whatever a docker client prints for an image, its readers get the fields
    they read, of the kind they read them as, or an EngineError: never a
    KeyError or TypeError."""
    from securebuild_tasks.engine import inspect_with_cli

    docker = stand_in_docker(tmp_path, f"#!/bin/sh\ncat <<'EOF'\n{printed}\nEOF\n")
    with pytest.raises(EngineError, match="cannot inspect image base"):
        inspect_with_cli(str(docker), "base")


def test_warnings_before_the_inspect_answer_are_passed_over(tmp_path: Path) -> None:
    from securebuild_tasks.engine import inspect_with_cli

    docker = stand_in_docker(
        tmp_path,
        "#!/bin/sh\necho 'WARNING: the config file has an unknown key'\n"
        'echo \'[{"Id": "sha256:ab", "Size": 7, "RepoTags": ["base:1"]}]\'\n',
    )
    assert inspect_with_cli(str(docker), "base")["Size"] == 7


def test_a_client_that_prints_bytes_that_are_not_utf8_is_read(tmp_path: Path) -> None:
    """A socket path or a message in another encoding: read with replacement
    characters, never a UnicodeDecodeError."""
    from securebuild_tasks.engine import _probe, inspect_with_cli

    docker = stand_in_docker(
        tmp_path, "#!/bin/sh\nprintf 'No such image: caf\\351\\n' >&2\nexit 1\n"
    )
    code, said = _probe([str(docker), "version"])
    assert (code, said) == (1, "No such image: caf\ufffd")
    with pytest.raises(EngineError, match="cannot inspect image caf"):
        inspect_with_cli(str(docker), "caf")


def test_an_unreachable_tls_endpoint_says_the_clients_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TLS context the SDK cannot use: the message gives the CLI's own reason,
    not the name of a class of this tool's."""
    from securebuild_tasks import engine as engine_module

    def no_sdk(*_: object) -> object:
        raise engine_module._NoSDK("tcp://127.0.0.1:1")

    monkeypatch.setattr(engine_module, "endpoint", no_sdk)
    monkeypatch.setattr(engine_module, "sdk_client", no_sdk)
    monkeypatch.setattr(
        engine_module,
        "_probe",
        lambda argv: (1, "Client: 20.10\nerror during connect: connection refused"),
    )
    with pytest.raises(EngineError) as refused:
        engine_module.ping(engine_module.Engine("docker", "classic", "20.10.24"))
    assert refused.value.message == (
        "cannot reach the Docker daemon at tcp://127.0.0.1:1"
        " (error during connect: connection refused)"
    )


def test_an_image_without_an_id_after_the_build_is_one_error(tmp_path: Path) -> None:
    from securebuild_tasks.engine import inspect_image

    docker = stand_in_docker(tmp_path, "#!/bin/sh\necho '[{}]'\n")
    with pytest.raises(EngineError, match="image app:1 was not found after the build"):
        inspect_image("app:1", str(docker))


# A child that ignores SIGTERM (as a docker client stuck on a dead engine may),
# reports its pid, and would run for a minute.
_STUBBORN = """\
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
print("started", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("passthrough", [False, True])
@pytest.mark.parametrize("second_interrupt", ["none", "while waiting", "while revoking"])
def test_an_interrupted_build_never_leaves_its_docker_client_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second_interrupt: str, passthrough: bool
) -> None:
    """Ctrl-C during the build revokes the key and stops the child. A second Ctrl-C
    (or SIGTERM), while the key is revoked or while docker is given time to cancel
    the build, kills it at once; with none, a child that ignores SIGTERM is killed
    after the grace period. Either way it is gone when the interrupt reaches the
    caller."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from securebuild_tasks import engine as engine_module

    pidfile = tmp_path / "pid"
    started: list[subprocess.Popen[str]] = []
    revoked: list[bool] = []

    class Recorded(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    monkeypatch.setattr(engine_module.subprocess, "Popen", Recorded)
    # Without a second interrupt the grace period must end; with one, a grace
    # period that never ends shows whether the second interrupt was heeded.
    monkeypatch.setattr(engine_module, "STOP_GRACE", 0.3 if second_interrupt == "none" else 3600)

    def interrupt_soon() -> None:
        signal.signal(signal.SIGALRM, signal.default_int_handler)
        signal.setitimer(signal.ITIMER_REAL, 0.3)

    def revoke() -> None:
        revoked.append(True)
        if second_interrupt == "while revoking":
            raise KeyboardInterrupt
        if second_interrupt == "while waiting":
            interrupt_soon()

    def first_interrupt() -> None:
        # Ctrl-C once the child is running (its pid written).
        while not pidfile.exists() or not pidfile.read_text():
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    # A watchdog, not a time limit: a child left to a grace period that never
    # ends would hang the test; it is killed after a minute and the test fails.
    rescued: list[bool] = []

    def watchdog() -> None:
        if not done.wait(60) and started and started[0].poll() is None:
            rescued.append(True)
            started[0].kill()

    done = threading.Event()
    threading.Thread(target=watchdog, daemon=True).start()
    threading.Thread(target=first_interrupt, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            engine_module.run_streaming(
                [sys.executable, "-c", _STUBBORN, str(pidfile)],
                env=os.environ,
                out=io.StringIO(),
                passthrough=passthrough,
                on_interrupt=revoke,
            )
    finally:
        done.set()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert rescued == []
    assert len(started) == 1
    assert started[0].returncode is not None  # reaped: it no longer runs
    assert revoked == [True]
