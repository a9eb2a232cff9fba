"""Session-wide real parts: one engine, one base image, one git server and index.

Everything is started once per test session (a full run stays well under its
time budget) and talks only to 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine, detect_engine, ping
from securebuild_tasks.errors import SecurebuildError
from tests.conftest import need
from tests.support.cli import run_cli, user_env
from tests.support.realparts import (
    Agent,
    GitServer,
    PackageIndex,
    PrivateIndex,
    SSHKey,
    build_backend_wheels,
    make_key,
)

BASE_IMAGE = os.environ.get("SBT_BASE_IMAGE", "securebuild-test/python:bookworm")
WHEEL_CACHE = Path(
    os.environ.get("SBT_WHEEL_CACHE", Path.home() / ".cache/securebuild-tests/wheels")
)


def slow_setup(name: str) -> str:
    """A setup.py that keeps the build busy, so a test can sample and interrupt it.

    It sleeps in a directory named after the package: for the whole sleep, the
    build backend's working directory tells this build's process from any other
    (its argv does not name the package, and git's short fetch may be missed).
    """
    return f"""\
import os, tempfile, time
from setuptools import setup
here = os.getcwd()
os.chdir(tempfile.mkdtemp(prefix="{name}-sleeping-"))
time.sleep(120)
os.chdir(here)
setup()
"""


USER_TASKS = """\
from invoke import Collection
import securebuild_tasks

ns = Collection()
securebuild_tasks.add_to(ns)
"""


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The Docker engine the integration tests build with."""
    try:
        found = detect_engine()
        ping(found)
    except SecurebuildError as exc:
        need(False, f"no Docker engine with BuildKit ({exc.line()}); run .ci/services.sh")
        raise
    return found


@pytest.fixture(scope="session")
def base_image(engine: Engine) -> str:
    """The local Python base image (no registry is reachable in the lab)."""
    done = subprocess.run(
        [engine.docker, "image", "inspect", BASE_IMAGE], capture_output=True, check=False
    )
    need(done.returncode == 0, f"base image {BASE_IMAGE} is missing; run .ci/services.sh")
    return BASE_IMAGE


@pytest.fixture(scope="session")
def data_root(engine: Engine) -> Path:
    """The daemon's data root, searched for key bytes after builds."""
    out = subprocess.run(
        [engine.docker, "info", "--format", "{{.DockerRootDir}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = Path(out)
    need(os.access(path, os.R_OK), f"cannot read the daemon data root {path}")
    return path


@pytest.fixture(scope="session")
def keyring_ready() -> None:
    """A real keyring backend (the Secret Service in CI) must be usable."""
    import keyring

    backend = keyring.get_keyring()
    need(
        backend.priority >= 1,
        f"no secure keyring backend ({type(backend).__name__}); run the tests with `inv test`",
    )


def in_image(docker: str, image: str, *argv: str, network: str = "none", check: bool = True) -> str:
    """Run ``argv`` in a throwaway container of ``image``; its stdout.

    With ``check`` the command must succeed (its stderr is the failure message).
    """
    done = subprocess.run(
        [docker, "run", "--rm", "--network", network, image, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert not check or done.returncode == 0, done.stderr
    return done.stdout


CI_CACHE = Path(os.environ.get("SBT_CI_CACHE", "/var/cache/securebuild-ci"))
MODERN_RUN = Path(os.environ.get("SBT_MODERN_RUN", "/run/securebuild-ci/modern-engine"))


@dataclass(frozen=True)
class ModernEngine:
    """dockerd 28 with the containerd image store, and buildx 0.29 for its clients.

    What the 20.10 engine cannot do is tested here: an exported build cache
    (buildx's docker driver exports one only from the containerd image store)
    and `docker build --check`. Reached through ``env`` (DOCKER_HOST and a
    DOCKER_CONFIG that holds the plugin).
    """

    docker: str
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this engine; output captured."""
        return subprocess.run(
            [self.docker, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="session")
def modern_engine() -> ModernEngine:
    """The second engine .ci/services.sh starts, with the base image loaded."""
    host = f"unix://{MODERN_RUN}/docker.sock"
    docker = shutil.which("docker")
    need(docker is not None, "no docker client")
    assert docker is not None
    engine = ModernEngine(
        docker, {"DOCKER_HOST": host, "DOCKER_CONFIG": str(MODERN_RUN / "config")}
    )
    info = engine.run("info", "--format", "{{.ServerVersion}}", check=False)
    need(info.returncode == 0, f"no modern engine at {host}; run .ci/services.sh")
    need(
        engine.run("image", "inspect", BASE_IMAGE, check=False).returncode == 0,
        f"the modern engine lacks {BASE_IMAGE}; run .ci/services.sh",
    )
    return engine


@pytest.fixture(scope="session")
def buildx_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DOCKER_CONFIG whose docker client has the buildx plugin (fetched by
    .ci/services.sh, kept out of the system's plugin path so that every other
    test builds with the classic client)."""
    plugin = CI_CACHE / "buildx" / "cli-plugins" / "docker-buildx"
    need(os.access(plugin, os.X_OK), f"no buildx plugin at {plugin}; run .ci/services.sh")
    config = tmp_path_factory.mktemp("buildx-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-buildx").symlink_to(plugin)
    return config


@dataclass
class Lab:
    """The session's git server, package index and keys."""

    server: GitServer
    index: PackageIndex
    deploy: SSHKey
    other: SSHKey
    encrypted: SSHKey
    private_url: str
    slow_url: str
    keyring_service: str = field(
        default_factory=lambda: f"securebuild-tests-{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A real sshd serving private packages, and a local package index."""
    need(Path("/usr/sbin/sshd").exists() or bool(shutil.which("sshd")), "OpenSSH server missing")
    root = tmp_path_factory.mktemp("lab")
    server = GitServer(root / "git").start()
    index = PackageIndex(build_backend_wheels(WHEEL_CACHE)).start()
    keys = root / "keys"
    deploy = make_key(keys, "deploy-key")
    other = make_key(keys, "other-key")
    encrypted = make_key(keys, "encrypted-key", passphrase="correct horse battery", kind="rsa")
    server.authorize(deploy)
    server.authorize(encrypted)
    private_url = server.create_package("privpkg", "v1.0.0", "1.0.0")
    slow_url = server.create_package("slowpkg", "v0.1.0", "0.1.0", setup_py=slow_setup("slowpkg"))
    try:
        yield Lab(server, index, deploy, other, encrypted, private_url, slow_url)
    finally:
        index.stop()
        server.stop()


@pytest.fixture(scope="session")
def private_index(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateIndex]:
    """The lab's wheels behind HTTP Basic credentials, with a token made for this run."""
    root = tmp_path_factory.mktemp("private-index")
    index = PrivateIndex(lab.index.wheels, "ci", f"tok-{secrets.token_hex(16)}", root).start()
    try:
        yield index
    finally:
        index.stop()


@dataclass
class Project:
    """A user's project: app, requirements, pinned known_hosts, tasks.py."""

    path: Path
    env: dict[str, str]
    image: str

    def requirements(self, text: str) -> None:
        """Replace requirements.txt, tagged with the project so no other build's cache fits.

        The tag is an option line naming a host nobody contacts: the template's
        SSH step is keyed by the file's options and URL lines, not its comments.
        """
        tag = self.image.split(":")[0]
        (self.path / "requirements.txt").write_text(f"--trusted-host {tag}.invalid\n{text}")

    def inv(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``inv ARGS`` in the project like a user would; output is captured."""
        return run_cli(
            "invoke",
            self.path,
            *args,
            env={**self.env, **(env or {})},
            input=input.decode() if input is not None else None,
            timeout=timeout,
        )

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``inv ARGS`` in the background, in a session of its own (output merged).

        The caller ends it; ``os.killpg(pid, SIGINT)`` is what a terminal's Ctrl-C does.
        """
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=self.path,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def project(tmp_path: Path, lab: Lab, base_image: str, engine: Engine) -> Iterator[Project]:
    """A fresh project whose build needs the private package over SSH."""
    path = tmp_path / "project"
    (path / "app").mkdir(parents=True)
    (path / "app" / "__init__.py").write_text("")
    (path / "app" / "__main__.py").write_text("import privpkg\nprint(privpkg.VERSION)\n")
    (path / "known_hosts").write_text(lab.server.known_hosts_line())
    (path / "pip.conf").write_text(lab.index.pip_config())
    (path / "tasks.py").write_text(USER_TASKS)
    (path / ".dockerignore").write_text("known_hosts\npip.conf\n.env\n")
    image = f"sbt-{uuid.uuid4().hex[:10]}"
    env = user_env(
        **{
            "SECUREBUILD_IMAGE": image,
            "SECUREBUILD_KNOWN_HOSTS": str(path / "known_hosts"),
            "SECUREBUILD_PIP_CONFIG": str(path / "pip.conf"),
            "SECUREBUILD_NETWORK": "host",
            "SECUREBUILD_BASE_IMAGE": base_image,
            "SECUREBUILD_KEYRING_SERVICE": lab.keyring_service,
            "SECUREBUILD_DOCKER": engine.docker,
        }
    )
    created = Project(path, env, f"{image}:latest")
    created.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\n")
    yield created
    subprocess.run(
        [engine.docker, "image", "rm", "-f", f"{image}:latest"], capture_output=True, check=False
    )


def own_slow_package(lab: Lab, prefix: str) -> tuple[str, str]:
    """A package of the test's own whose setup.py sleeps: (name, URL on the lab server).

    Its unique name shows up in the build's process argv and working
    directories, so a test can tell this build's private step from any other
    running on the shared engine.
    """
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    return name, lab.server.create_package(name, "v0.1.0", "0.1.0", setup_py=slow_setup(name))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """A user's ssh-agent, empty at first."""
    # A short path: unix socket paths are limited to ~104 bytes.
    root = Path(tempfile.mkdtemp(prefix="sbt-agent-"))
    started = Agent(root).start()
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(root, ignore_errors=True)


def securebuild_leftovers() -> list[str]:
    """Ephemeral work dirs or agents of this tool still present."""
    tmp = Path(tempfile.gettempdir())  # the test's own (see tests/conftest.py)
    left = [str(p) for p in tmp.glob("securebuild-*")]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ssh-agent" in cmdline and str(tmp / "securebuild-").encode() in cmdline:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
            left.append(f"process {proc.name}: {shown}")
    return left
