"""Real parts for integration tests and the demo: a git server over SSH, a
package index and ssh-agents, all on 127.0.0.1 and all torn down afterwards.

Nothing here talks to any address but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Wait until 127.0.0.1:port accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def run(
    *argv: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> str:
    """Run a command (no shell), fail loudly with its output."""
    done = subprocess.run(
        list(argv), cwd=cwd, env=env, input=input, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
        )
    return done.stdout.decode(errors="replace")


@dataclass(frozen=True)
class SSHKey:
    """A key pair generated for a test."""

    private: Path
    public_line: str
    passphrase: str = ""

    @property
    def private_bytes(self) -> bytes:
        """The private key file's content."""
        return self.private.read_bytes()

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint, as ssh-keygen prints it."""
        return run("ssh-keygen", "-l", "-E", "sha256", "-f", str(self.private) + ".pub").split()[1]


def make_key(directory: Path, name: str, passphrase: str = "", kind: str = "ed25519") -> SSHKey:
    """Generate a fresh key pair with ssh-keygen."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", name, "-f", str(path)]
    if kind == "rsa":
        argv[4:4] = ["-b", "3072"]
    run(*argv)
    path.chmod(0o600)
    return SSHKey(path, (directory / f"{name}.pub").read_text().strip(), passphrase)


class GitServer:
    """A real OpenSSH server on 127.0.0.1 serving bare git repositories.

    It logs in as the current user with keys from its own authorized_keys file,
    so neither system users nor the user's ~/.ssh are touched.
    """

    def __init__(self, root: Path, extra_config: tuple[str, ...] = ()) -> None:
        self.root = root
        self.extra_config = extra_config
        self.port = free_port()
        self.user = getpass.getuser()
        self.repos = root / "repos"
        self.authorized_keys = root / "authorized_keys"
        self.host_key = root / "ssh_host_ed25519_key"
        self.log = root / "sshd.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> GitServer:
        """Start sshd in the foreground and wait for its port."""
        self.repos.mkdir(parents=True, exist_ok=True)
        self.authorized_keys.touch()
        if not self.host_key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    f"AllowUsers {self.user}",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "LogLevel VERBOSE",
                    *self.extra_config,
                    "",
                ]
            )
        )
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"sshd did not start: {self.log.read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        """Stop sshd (idempotent)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    @property
    def running(self) -> bool:
        """Whether sshd is up."""
        return self._process is not None and self._process.poll() is None

    def authorize(self, key: SSHKey) -> None:
        """Let ``key`` log in."""
        with self.authorized_keys.open("a") as f:
            f.write(key.public_line + "\n")

    def known_hosts_line(self, host_key: Path | None = None) -> str:
        """The pinned known_hosts entry for this server (from its own host key file)."""
        kind, body = (Path(str(host_key or self.host_key) + ".pub")).read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {body}\n"

    def url(self, name: str) -> str:
        """The ssh:// URL of repository ``name``."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.repos / name}.git"

    def create_package(
        self,
        name: str,
        tag: str,
        version: str,
        *,
        body: str = "",
        setup_py: str = "",
        dependencies: tuple[str, ...] = (),
    ) -> str:
        """Make a bare repo holding a tiny installable package; return its URL."""
        work = self.root / "work" / name
        if work.exists():
            shutil.rmtree(work)
        (work / name).mkdir(parents=True)
        (work / "pyproject.toml").write_text(
            "[build-system]\n"
            'requires = ["setuptools>=61", "wheel"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
            # Only when asked: declared metadata changes how often uv fetches
            # (see test_one_ssh_login_serves_every_fetch_of_a_step).
            + (f"dependencies = {json.dumps(list(dependencies))}\n" if dependencies else "")
        )
        if setup_py:
            (work / "setup.py").write_text(setup_py)
        (work / name / "__init__.py").write_text(
            f'"""A private test package."""\nVERSION = "{version}"\n{body}'
        )
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@localhost",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@localhost",
        }
        run("git", "init", "-q", "-b", "main", cwd=work, env=env)
        run("git", "add", "-A", cwd=work, env=env)
        run("git", "commit", "-q", "-m", f"{name} {version}", cwd=work, env=env)
        run("git", "tag", tag, cwd=work, env=env)
        bare = self.repos / f"{name}.git"
        if bare.exists():
            shutil.rmtree(bare)
        run("git", "clone", "-q", "--bare", str(work), str(bare), env=env)
        return self.url(name)


AUTH_SERVER = """\
import base64, functools, http.server, sys
port, root, expected = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        wanted = "Basic " + base64.b64encode(expected.encode()).decode()
        if self.headers.get("Authorization") != wanted:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="private"')
            self.end_headers()
            return
        super().do_GET()
handler = functools.partial(Handler, directory=root)
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
"""


class PackageIndex:
    """A read-only package index on 127.0.0.1 (``find-links`` over HTTP).

    It serves the build backends that private packages need (setuptools and
    wheel), so builds never reach a public index during tests.
    """

    def __init__(self, wheels: Path) -> None:
        self.wheels = wheels
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def server_argv(self) -> list[str]:
        """The file server's command line."""
        return [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            str(self.port),
            "--directory",
            str(self.wheels),
        ]

    def start(self) -> PackageIndex:
        """Serve the wheel folder."""
        self._process = subprocess.Popen(
            self.server_argv(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def pip_config(self) -> str:
        """A pip.conf that uses only this index."""
        return f"[global]\nno-index = true\nfind-links = http://127.0.0.1:{self.port}/\n"


class _IndexTree(PackageIndex):
    """An index served from a tree of its own under ``root``, removed when it stops."""

    def __init__(self, wheels: Path, root: Path) -> None:
        super().__init__(wheels)
        self.root = root

    def stop(self) -> None:
        """Stop serving and remove the index tree."""
        super().stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def simple_url(self) -> str:
        """The index URL (PEP 503 layout), without credentials."""
        return f"http://127.0.0.1:{self.port}/simple/"


PYPI_LIKE_SERVER = """\
import functools, http.server, sys
port, root = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: on a kept-alive connection
    # Nagle's algorithm would hold the body until the client's delayed ACK.
    disable_nagle_algorithm = True
    def end_headers(self):
        if self.path.startswith("/simple/"):
            self.send_header("Cache-Control", "max-age=600, public")
        else:
            self.send_header("Cache-Control", "max-age=365000000, immutable, public")
        super().end_headers()
    def log_message(self, *args):
        pass
handler = functools.partial(Handler, directory=root)
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
"""


class PyPILikeIndex(_IndexTree):
    """A simple index (PEP 503) that serves its wheels the way PyPI does.

    Each project page links its files with sha256 fragments and announces
    their core metadata under PEP 714's name (``data-core-metadata``), served
    beside each wheel as ``<wheel>.metadata``, so a resolver reads a wheel's
    dependencies without downloading it. Only the new name: pip before 23.2
    reads the old one alone, and the base image's pip 23.0 then refuses
    packages whose metadata spells their name differently (``Jinja2``, pip
    issue 12038); with the new name alone it downloads wheels as it always
    did. Pages are cacheable for ten minutes and files for ever, and
    connections are kept alive (HTTP/1.1). The flat ``find-links`` page of
    `PackageIndex` offers none of this and makes a caching resolver such as
    uv stream whole wheels to read their metadata. The benchmark uses this
    one, because the public packages of a real project come from PyPI or a
    mirror of it.
    """

    def server_argv(self) -> list[str]:
        """The file server, with PyPI's caching headers and keep-alive."""
        return [sys.executable, "-c", PYPI_LIKE_SERVER, str(self.port), str(self.root)]

    def start(self) -> PyPILikeIndex:
        """Write the index tree (pages, metadata files, links to the wheels), then serve it."""
        projects: dict[str, list[str]] = {}
        files = self.root / "files"
        files.mkdir(parents=True, exist_ok=True)
        for wheel in sorted(self.wheels.glob("*.whl")):
            name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
            (files / wheel.name).symlink_to(wheel)
            with zipfile.ZipFile(wheel) as archive:
                metadata = archive.read(_metadata_member(archive))
            (files / f"{wheel.name}.metadata").write_bytes(metadata)
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            core = f"sha256={hashlib.sha256(metadata).hexdigest()}"
            projects.setdefault(name, []).append(
                f'<a href="../../files/{wheel.name}#sha256={digest}" '
                f'data-core-metadata="{core}">{wheel.name}</a>'
            )
        for name, links in projects.items():
            page = self.root / "simple" / name / "index.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(_html_page(links))
        (self.root / "simple" / "index.html").write_text(
            _html_page(f'<a href="{name}/">{name}</a>' for name in sorted(projects))
        )
        super().start()
        return self

    def pip_config(self) -> str:
        """A pip.conf that uses only this index."""
        return f"[global]\nindex-url = {self.simple_url}\n"


def _metadata_member(archive: zipfile.ZipFile) -> str:
    """The path of a wheel's METADATA file (in its top-level ``.dist-info``)."""
    for member in archive.namelist():
        top, _, rest = member.partition("/")
        if top.endswith(".dist-info") and rest == "METADATA":
            return member
    raise RuntimeError(f"{archive.filename} has no .dist-info/METADATA")


def _html_page(links: Iterable[str]) -> str:
    body = "<br/>\n".join(links)
    return f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n"


INDEX_PACKAGES = {"setuptools": "setuptools>=61,<81", "wheel": "wheel", "uv": "uv", "six": "six"}


def build_backend_wheels(cache: Path) -> Path:
    """The local index's wheels, downloaded once into ``cache``.

    setuptools and wheel build the private packages, uv resolves locks, six is a
    public dependency for lock tests.
    """
    cache.mkdir(parents=True, exist_ok=True)
    missing = [
        spec for name, spec in INDEX_PACKAGES.items() if not any(cache.glob(f"{name}-*.whl"))
    ]
    if missing:
        run(
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--dest",
            str(cache),
            *missing,
        )
    return cache


class Agent:
    """A real OpenSSH ssh-agent on a socket of its own."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        self.socket = root / "agent.sock"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        """Start ``ssh-agent -D`` and wait for the socket."""
        self._process = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(self.socket)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("ssh-agent did not open its socket")
            time.sleep(0.02)
        return self

    def env(self) -> dict[str, str]:
        """Environment pointing at this agent."""
        return {**os.environ, "SSH_AUTH_SOCK": str(self.socket)}

    def add(self, key: SSHKey) -> None:
        """Load a key (unencrypted) from its file."""
        run("ssh-add", "-q", str(key.private), env=self.env())

    def clear(self) -> None:
        """Remove every key."""
        run("ssh-add", "-D", env=self.env())

    def stop(self) -> None:
        """Stop the agent."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=10)


@contextlib.contextmanager
def lab(root: Path, wheel_cache: Path) -> Iterator[tuple[GitServer, PackageIndex]]:
    """A git server and a package index, stopped on exit."""
    server = GitServer(root / "git").start()
    index = PackageIndex(build_backend_wheels(wheel_cache)).start()
    try:
        yield server, index
    finally:
        index.stop()
        server.stop()


class PrivateIndex(_IndexTree):
    """A package index that answers only with HTTP Basic credentials, like a private one."""

    def __init__(self, wheels: Path, user: str, token: str, root: Path) -> None:
        super().__init__(wheels, root)
        self.user, self.token = user, token

    def server_argv(self) -> list[str]:
        """An HTTP file server that requires the credentials."""
        return [
            sys.executable,
            "-c",
            AUTH_SERVER,
            str(self.port),
            str(self.root),
            f"{self.user}:{self.token}",
        ]

    def start(self) -> PrivateIndex:
        """Serve the wheels flat (``find-links``) and as a simple index under ``/simple/``."""
        for wheel in self.wheels.glob("*.whl"):
            (self.root / wheel.name).symlink_to(wheel)
            project = wheel.name.split("-", 1)[0].lower().replace("_", "-").replace(".", "-")
            (self.root / "simple" / project).mkdir(parents=True, exist_ok=True)
            (self.root / "simple" / project / wheel.name).symlink_to(wheel)
        super().start()
        return self

    def netrc(self) -> str:
        """A .netrc line with the credentials."""
        return f"machine 127.0.0.1 login {self.user} password {self.token}\n"
