"""This repository's own tasks, and a living example of composing the collection.

``securebuild_tasks.add_to(ns)`` puts ``build-image``, ``store-key``,
``forget-key`` and ``show-settings`` next to the project's own tasks.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

import securebuild_tasks

ROOT = Path(__file__).resolve().parent
LAB_BASE_IMAGE = "securebuild-test/python:bookworm"
# The test session's keyring password: it guards a throwaway keyring that lives
# only inside the test run's own D-Bus session, never the user's.
_TEST_KEYRING_PASSWORD = "securebuild-tests"  # noqa: S105


def _run(argv: list[str], **kwargs: object) -> int:
    """Run a command list (never a shell string) and return its exit code."""
    return subprocess.call(argv, cwd=ROOT, **kwargs)  # type: ignore[arg-type]


@task(help={"pytest-args": "extra arguments for pytest, e.g. '-k agent -x'"})
def test(c: Context, pytest_args: str = "") -> None:
    """Run the whole test suite, inside a private Secret Service session when possible."""
    argv = [sys.executable, "-m", "pytest", *shlex.split(pytest_args)]
    if shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon"):
        # A private D-Bus session with its own unlocked keyring: the tests use a
        # real Secret Service without ever touching the user's keyring.
        script = (
            'printf %s "$SB_KEYRING_PW" | gnome-keyring-daemon --unlock --components=secrets'
            ' >/dev/null; unset SB_KEYRING_PW; exec "$@"'
        )
        argv = ["dbus-run-session", "--", "sh", "-c", script, "sh", *argv]
    env = {**os.environ, "SB_KEYRING_PW": _TEST_KEYRING_PASSWORD}
    code = _run(argv, env=env)
    if code:
        raise Exit(code=code)


@task
def lint(c: Context) -> None:
    """Check style and types (ruff, mypy --strict)."""
    for argv in (["ruff", "check", "."], ["mypy"]):
        if _run(argv):
            raise Exit(f"{argv[0]} failed", code=1)


@task(help={"keep": "keep the demo image afterwards"})
def demo(c: Context, keep: bool = False) -> None:
    """Build the example app with a private git dependency from a local git server."""
    from securebuild_tasks.build import build_image
    from securebuild_tasks.errors import SecurebuildError
    from securebuild_tasks.settings import resolve
    from tests.support.realparts import lab, make_key

    with tempfile.TemporaryDirectory(prefix="securebuild-demo-") as tmp:
        root = Path(tmp)
        cache = Path.home() / ".cache" / "securebuild-tests" / "wheels"
        with lab(root, cache) as (server, index):
            key = make_key(root / "keys", "demo-deploy-key")
            server.authorize(key)
            url = server.create_package("privpkg", "v1.0.0", "1.0.0")
            app = root / "hello"
            shutil.copytree(ROOT / "examples" / "hello", app)
            (app / "requirements.txt").write_text(f"privpkg @ git+{url}@v1.0.0\n")
            (root / "known_hosts").write_text(server.known_hosts_line())
            (root / "pip.conf").write_text(index.pip_config())
            flags = {
                "image": "securebuild-demo",
                "context": str(app),
                "key_source": "file",
                "key_file": str(key.private),
                "known_hosts": str(root / "known_hosts"),
                "pip_config": str(root / "pip.conf"),
                "network": "host",
            }
            if "SECUREBUILD_BASE_IMAGE" not in os.environ and _image_exists(LAB_BASE_IMAGE):
                flags["base_image"] = LAB_BASE_IMAGE
            try:
                result = build_image(resolve(flags=flags, cwd=ROOT), cwd=ROOT)
            except SecurebuildError as exc:
                raise Exit(f"securebuild: error: {exc.line()}", code=exc.exit_code) from None
            print(f"demo: built {result.image} with key {result.key_fingerprint}")
            docker = shutil.which("docker") or "docker"
            _run([docker, "run", "--rm", "--network", "host", result.image])
            if not keep:
                _run([docker, "image", "rm", "-f", result.image], stdout=subprocess.DEVNULL)


def _image_exists(ref: str) -> bool:
    docker = shutil.which("docker")
    return (
        bool(docker)
        and _run(
            [docker or "docker", "image", "inspect", ref],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        == 0
    )


ns = Collection(test, lint, demo)
securebuild_tasks.add_to(ns)
