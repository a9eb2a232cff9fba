"""`inv lock` and `inv vendor` against the real engine and git server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.integration.test_build_image import _assert_one_line_error
from tests.support.fixtures import Lab, Project, in_image, securebuild_leftovers
from tests.support.leaks import find_in_tree, key_needles
from tests.support.realparts import GitServer, PackageIndex, run

pytestmark = pytest.mark.engine

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@localhost",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@localhost",
}


def _key_env(lab: Lab) -> dict[str, str]:
    return {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}


def _version_in_image(engine: Engine, image: str, module: str) -> str:
    script = f"import {module}; print({module}.VERSION)"
    return in_image(engine.docker, image, "python", "-c", script).strip()


def _move_tag(server: GitServer, name: str, tag: str, version: str) -> str:
    """Commit a new version in the bare repo and move ``tag`` onto it; return the new SHA."""
    work = server.root / "work" / name
    (work / name / "__init__.py").write_text(f'VERSION = "{version}"\n')
    run("git", "commit", "-q", "-am", version, cwd=work, env=GIT_ENV)
    run("git", "tag", "-f", tag, cwd=work, env=GIT_ENV)
    run(
        "git",
        "push",
        "-q",
        "--force",
        str(server.repos / f"{name}.git"),
        f"refs/tags/{tag}",
        cwd=work,
        env=GIT_ENV,
    )
    return run("git", "rev-parse", tag, cwd=work).strip()


def _lock(project: Project, lab: Lab, text: str) -> str:
    (project.path / "requirements.in").write_text(f"# {project.image}\n{text}")
    done = project.inv("lock", env=_key_env(lab))
    assert done.returncode == 0, done.stderr[-3000:]
    return (project.path / "requirements.lock").read_text()


@pytest.fixture
def moving_server(tmp_path: Path, lab: Lab) -> GitServer:
    """A git server of the test's own, whose tags the test may move."""
    server = GitServer(tmp_path / "git").start()
    server.authorize(lab.deploy)
    yield server
    server.stop()


def test_lock_pins_commit_and_survives_a_moved_tag(
    project: Project, lab: Lab, engine: Engine, moving_server: GitServer, data_root: Path
) -> None:
    """The lock pins the commit the tag named, so moving the tag changes nothing."""
    url = moving_server.create_package("movingpkg", "v1.0.0", "1.0.0")
    (project.path / "known_hosts").write_text(moving_server.known_hosts_line())
    old_sha = run("git", "rev-parse", "v1.0.0", cwd=moving_server.root / "work" / "movingpkg")
    lock = _lock(project, lab, f"movingpkg @ git+{url}@v1.0.0\nsix\n")

    assert lock.startswith("# securebuild-lock: input=requirements.in sha256=")
    assert f"movingpkg @ git+{url}@{old_sha.strip()}" in lock
    assert re.search(r"six==[\d.]+ \\\n\s+--hash=sha256:[0-9a-f]{64}", lock)

    new_sha = _move_tag(moving_server, "movingpkg", "v1.0.0", "9.9.9")
    done = project.inv("build-image", env=_key_env(lab))
    assert done.returncode == 0, done.stderr[-3000:]
    assert _version_in_image(engine, project.image, "movingpkg") == "1.0.0"
    assert find_in_tree(data_root, key_needles(lab.deploy.private_bytes)) == []
    assert securebuild_leftovers() == []

    # Locking again resolves again: the same input now pins where the tag moved.
    relocked = project.inv("lock", env=_key_env(lab))
    assert relocked.returncode == 0, relocked.stderr[-3000:]
    lock = (project.path / "requirements.lock").read_text()
    assert f"movingpkg @ git+{url}@{new_sha}" in lock


def test_stale_and_hand_edited_locks_are_refused(project: Project, lab: Lab) -> None:
    """A lock whose input changed, or that was edited unsafely, stops the build."""
    lock = _lock(project, lab, f"privpkg @ git+{lab.private_url}@v1.0.0\nsix\n")
    lock_path = project.path / "requirements.lock"
    source = project.path / "requirements.in"

    source.write_text(source.read_text() + "wheel\n")
    _assert_one_line_error(project.inv("build-image", env=_key_env(lab)), 2, "is stale")
    source.write_text(source.read_text().replace("wheel\n", ""))

    lock_path.write_text(re.sub(r"@[0-9a-f]{40}", "@v1.0.0", lock))
    _assert_one_line_error(
        project.inv("build-image", env=_key_env(lab)), 2, "not pinned to a commit SHA"
    )
    lock_path.write_text(re.sub(r" \\\n\s+--hash=sha256:[0-9a-f]{64}", "", lock))
    _assert_one_line_error(
        project.inv("build-image", env=_key_env(lab)), 2, "lacks an exact version with sha256"
    )
    lock_path.write_text("\n".join(lock.splitlines()[1:]) + "\n")
    _assert_one_line_error(project.inv("build-image", env=_key_env(lab)), 2, "no securebuild-lock")


def test_tampered_index_hash_fails_the_build(project: Project, lab: Lab) -> None:
    """A hash in the lock that does not match the index's file fails, hash-checked."""
    lock = _lock(project, lab, "six\n")
    tampered = re.sub(r"(--hash=sha256:)[0-9a-f]{64}", r"\g<1>" + "0" * 64, lock)
    (project.path / "requirements.lock").write_text(tampered)
    done = project.inv("build-image", env=_key_env(lab))
    _assert_one_line_error(done, 2, "does not match the hash")


def test_partly_hashed_requirements_are_refused(project: Project, lab: Lab) -> None:
    """A requirements file with some hashes is installed all or nothing (pip's
    hash-checking mode, which uv follows here): an unpinned line beside the lines
    `inv lock` wrote is refused before the build, naming it."""
    six = re.search(r"(?m)^six==.*(?:\n\s+--hash=.*)+", _lock(project, lab, "six\n"))
    assert six is not None
    (project.path / "requirements.lock").unlink()
    project.requirements(f"{six.group(0)}\nwheel\n")
    done = project.inv("build-image", env=_key_env(lab))
    _assert_one_line_error(done, 2, "(wheel) lacks an exact version with sha256 hashes")


def _tamper(wheel: Path) -> None:
    """Change a wheel on the index: the same name, a valid wheel, other content."""
    with zipfile.ZipFile(wheel, "a") as changed:
        changed.writestr(f"{wheel.name.split('-')[0]}_payload.py", "print('tampered')\n")


def test_tampered_index_file_fails_the_build(project: Project, lab: Lab, tmp_path: Path) -> None:
    """A file on the index that changes after locking fails the build, hash-checked.

    The tampered file is served from another address than the genuine one was:
    the installer's cache holds the genuine file under its old address (and
    would rightly install it, since it matches the lock).
    """
    wheels = tmp_path / "index"
    shutil.copytree(lab.index.wheels, wheels)
    index = PackageIndex(wheels).start()
    try:
        (project.path / "pip.conf").write_text(index.pip_config())
        _lock(project, lab, "six\n")
    finally:
        index.stop()
    _tamper(next(wheels.glob("six-*.whl")))
    moved = PackageIndex(wheels).start()
    try:
        (project.path / "pip.conf").write_text(moved.pip_config())
        done = project.inv("build-image", env=_key_env(lab))
    finally:
        moved.stop()
    _assert_one_line_error(done, 2, "does not match the hash")


def test_the_build_backend_of_a_git_package_is_locked_and_hash_checked(
    project: Project, lab: Lab, moving_server: GitServer, tmp_path: Path
) -> None:
    """`inv lock` pins the build requirements of each git package (its
    pyproject.toml's, at the locked commit) with hashes; a build from the lock
    checks the backend it installs, in the step that has the key, against them.
    A setuptools wheel changed on the index after locking fails that build;
    without the pins the same build would run the changed backend."""
    url = moving_server.create_package("backendpkg", "v1.0.0", "1.0.0")
    (project.path / "known_hosts").write_text(moving_server.known_hosts_line())
    wheels = tmp_path / "index"
    shutil.copytree(lab.index.wheels, wheels)
    index = PackageIndex(wheels).start()
    try:
        (project.path / "pip.conf").write_text(index.pip_config())
        lock = _lock(project, lab, f"backendpkg @ git+{url}@v1.0.0\n")
    finally:
        index.stop()
    setuptools = next(wheels.glob("setuptools-*.whl"))
    version = setuptools.name.split("-")[1]
    digest = hashlib.sha256(setuptools.read_bytes()).hexdigest()
    assert f"#build: setuptools=={version} --hash=sha256:{digest}" in lock.splitlines()
    assert any(line.startswith("#build: wheel==") for line in lock.splitlines())

    _tamper(setuptools)
    moved = PackageIndex(wheels).start()
    try:
        (project.path / "pip.conf").write_text(moved.pip_config())
        done = project.inv("build-image", env=_key_env(lab))
        _assert_one_line_error(done, 2, "does not match the hash")
        assert "setuptools" in done.stderr
        unpinned = "".join(line + "\n" for line in lock.splitlines() if "#build:" not in line)
        (project.path / "requirements.lock").write_text(unpinned)
        done = project.inv("build-image", env=_key_env(lab))
        assert done.returncode == 0, done.stderr[-3000:]
        assert "securebuild: warning: requirements.lock pins no build backend" in done.stderr
    finally:
        moved.stop()


def test_lock_bad_input(project: Project, lab: Lab) -> None:
    """Missing, empty, unresolvable and conflicting inputs, and a missing tag: one line each."""
    _assert_one_line_error(project.inv("lock", env=_key_env(lab)), 2, "no lock input")
    source = project.path / "requirements.in"
    source.write_text("\n")
    _assert_one_line_error(project.inv("lock", env=_key_env(lab)), 2, "is empty")
    source.write_text("no-such-package-anywhere==1.0\n")
    _assert_one_line_error(
        project.inv("lock", env=_key_env(lab)), 2, "cannot be resolved", "no-such-package"
    )
    source.write_text("six==1.16.0\nsix==1.17.0\n")
    _assert_one_line_error(project.inv("lock", env=_key_env(lab)), 2, "cannot be resolved")
    source.write_text(f"privpkg @ git+{lab.private_url}@v404\n")
    _assert_one_line_error(project.inv("lock", env=_key_env(lab)), 2, "cannot be resolved")
    source.write_text(f"privpkg @ git+{lab.private_url.replace('privpkg', 'nosuchrepo')}@v1\n")
    _assert_one_line_error(project.inv("lock", env=_key_env(lab)), 2, "cannot be resolved")
    assert not (project.path / "requirements.lock").exists()
    assert securebuild_leftovers() == []


def test_vendor_then_build_offline(
    project: Project, lab: Lab, engine: Engine, moving_server: GitServer, data_root: Path
) -> None:
    """After vendor, the build needs no git server, no key and no network."""
    url = moving_server.create_package("vendoredpkg", "v2.0.0", "2.0.0")
    (project.path / "known_hosts").write_text(moving_server.known_hosts_line())
    links = f"--find-links http://127.0.0.1:{lab.index.port}/"
    locked = _lock(project, lab, f"{links}\nvendoredpkg @ git+{url}@v2.0.0\nsix\n")
    assert locked.splitlines()[1] == links  # the input's index options, carried over
    done = project.inv("vendor", env=_key_env(lab))
    assert done.returncode == 0, done.stderr[-3000:]
    wheelhouse = project.path / "vendor" / "python"
    manifest = json.loads((wheelhouse / "manifest.json").read_text())
    files = sorted(w["file"] for w in manifest["wheels"])
    assert [f.split("-")[0] for f in files] == ["six", "vendoredpkg"]
    assert find_in_tree(wheelhouse, key_needles(lab.deploy.private_bytes)) == []

    moving_server.stop()
    offline = {"SECUREBUILD_KEY_SOURCE": "agent", "SECUREBUILD_KNOWN_HOSTS": "/nonexistent"}
    built = project.inv("build-image", env=offline)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "no key, no network" in built.stderr
    assert _version_in_image(engine, project.image, "vendoredpkg") == "2.0.0"
    listing = in_image(
        engine.docker,
        project.image,
        "sh",
        "-c",
        # What the build added: the app, the venv, temp dirs (the base image's
        # own /usr/share/python-wheels is not the build's doing).
        # No .pyc either: the wheelhouse installs without precompiling, as builds do.
        "find /app /opt/venv /tmp /root \\( -name '*.whl' -o -name vendor"
        " -o -name '*.hashes' -o -name .cache -o -name '*.pyc' \\) -print",
        check=False,
    )
    assert listing.strip() == ""
    assert find_in_tree(data_root, key_needles(lab.deploy.private_bytes)) == []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hashed_file_mixing_git_archive_and_index_lines(
    project: Project, lab: Lab, engine: Engine, moving_server: GitServer
) -> None:
    """A hand-hashed file as pip reads it: NAME@URL without spaces, a URL archive
    with a hash of its own (in pip's other spelling, ``--hash sha256:...``), and a
    file-level index option that the git packages' build backend is found through
    (pip.conf gives no index at all).

    `inv vendor` builds every wheel, and a build installs them all with pip
    (which refuses git and hashed lines in one file) and with uv."""
    spaced = moving_server.create_package("spacedpkg", "v1.0.0", "1.0.0")
    tight = moving_server.create_package("tightpkg", "v1.0.0", "1.0.0")
    (project.path / "known_hosts").write_text(moving_server.known_hosts_line())
    wheels = lab.index.wheels
    six = next(wheels.glob("six-*.whl"))
    backend = next(wheels.glob("setuptools-*.whl"))
    project.requirements(
        f"--find-links http://127.0.0.1:{lab.index.port}/\n"
        f"spacedpkg @ git+{spaced}@v1.0.0\n"
        f"tightpkg@git+{tight}@v1.0.0\n"
        f"six @ http://127.0.0.1:{lab.index.port}/{six.name} --hash sha256:{_sha256(six)}\n"
        f"setuptools=={backend.name.split('-')[1]} \\\n    --hash=sha256:{_sha256(backend)}\n"
    )
    lab_config = (project.path / "pip.conf").read_text()
    (project.path / "pip.conf").write_text("[global]\nno-index = true\n")
    with_pip = {**_key_env(lab), "SECUREBUILD_INSTALLER": "pip"}

    done = project.inv("vendor", env=with_pip)
    assert done.returncode == 0, done.stderr[-3000:]
    wheelhouse = project.path / "vendor" / "python"
    manifest = json.loads((wheelhouse / "manifest.json").read_text())
    names = sorted(w["file"].split("-")[0] for w in manifest["wheels"])
    assert names == ["setuptools", "six", "spacedpkg", "tightpkg"]
    shutil.rmtree(project.path / "vendor")

    check = (
        "import setuptools, six, spacedpkg, tightpkg; print(spacedpkg.VERSION, tightpkg.VERSION)"
    )
    built = project.inv("build-image", env=with_pip)
    assert built.returncode == 0, built.stderr[-3000:]
    assert in_image(engine.docker, project.image, "python", "-c", check).split() == ["1.0.0"] * 2

    (project.path / "pip.conf").write_text(lab_config)
    built = project.inv("build-image", env={**_key_env(lab), "SECUREBUILD_INSTALLER": "uv"})
    assert built.returncode == 0, built.stderr[-3000:]
    assert in_image(engine.docker, project.image, "python", "-c", check).split() == ["1.0.0"] * 2


def test_vendor_cache_belongs_to_the_key(
    project: Project, lab: Lab, moving_server: GitServer
) -> None:
    """pip keeps the wheel it built from a git commit: another key gets no wheel from
    that cache, it is refused by the git host as if nothing had been built before."""
    url = moving_server.create_package("keyedpkg", "v1.0.0", "1.0.0")
    (project.path / "known_hosts").write_text(moving_server.known_hosts_line())
    _lock(project, lab, f"keyedpkg @ git+{url}@v1.0.0\n")
    assert project.inv("vendor", env=_key_env(lab)).returncode == 0
    shutil.rmtree(project.path / "vendor" / "python")
    other = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.other.private)}
    refused = project.inv("vendor", env=other)
    _assert_one_line_error(refused, 3, "refused the forwarded key")
    assert not (project.path / "vendor" / "python").exists()


def test_tampered_wheelhouse_is_refused(project: Project, lab: Lab) -> None:
    """A changed wheel, or one missing from the wheelhouse, stops the build."""
    _lock(project, lab, "six\n")
    assert project.inv("vendor", env=_key_env(lab)).returncode == 0
    wheelhouse = project.path / "vendor" / "python"
    wheel = next(wheelhouse.glob("six-*.whl"))
    original = wheel.read_bytes()

    wheel.write_bytes(original + b"\0")
    _assert_one_line_error(project.inv("build-image"), 2, "does not match its manifest hash")

    wheel.unlink()
    manifest = json.loads((wheelhouse / "manifest.json").read_text())
    manifest["wheels"] = [w for w in manifest["wheels"] if w["file"] != wheel.name]
    (wheelhouse / "manifest.json").write_text(json.dumps(manifest))
    hashes = wheelhouse / "requirements.hashes"
    hashes.write_text(
        "".join(line for line in hashes.read_text().splitlines(True) if wheel.name not in line)
    )
    _assert_one_line_error(project.inv("build-image"), 2, "lacks six")


def test_lock_from_pyproject_with_a_uv_source_over_ssh(project: Project, lab: Lab) -> None:
    """A pyproject.toml whose [tool.uv.sources] fetches a dependency from git over
    SSH locks: its host is pinned and the key forwarded, and the lock pins the
    commit. A version bump leaves the lock fresh for the build."""
    url = lab.private_url.removeprefix("git+")
    pyproject = project.path / "pyproject.toml"
    text = (
        f'[project]\nname = "{project.image.split(":")[0]}"\nversion = "1.0.0"\n'
        'dependencies = ["privpkg", "six"]\n\n'
        f'[tool.uv.sources]\nprivpkg = {{ git = "{url}", tag = "v1.0.0" }}\n'
    )
    pyproject.write_text(text)
    done = project.inv("lock", env=_key_env(lab))
    assert done.returncode == 0, done.stderr[-3000:]
    lock = (project.path / "requirements.lock").read_text()
    assert lock.startswith("# securebuild-lock: input=pyproject.toml sha256=")
    # uv writes "****" for a user name other than "git" from [tool.uv.sources]:
    # the lock holds the input's own, or a fresh build would log in as "****".
    assert re.search(rf"privpkg @ git\+{re.escape(url)}@[0-9a-f]{{40}}\n", lock), lock
    assert "****" not in lock
    assert "@" in url.split("//", 1)[1].split("/", 1)[0]  # the URL names its user
    pyproject.write_text(text.replace('version = "1.0.0"', 'version = "1.0.1"'))
    built = project.inv("build-image", env=_key_env(lab))
    assert built.returncode == 0, built.stderr[-3000:]
