"""`inv build-image` against a real engine, a real sshd and real agents and keyring.

Each build must produce an image in which the private package imports, and
leave no copy of the key anywhere the build touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from securebuild_tasks.build import template_path
from securebuild_tasks.engine import Engine
from tests.support.fixtures import BASE_IMAGE, Lab, Project, in_image, securebuild_leftovers
from tests.support.layers import added_files
from tests.support.leaks import (
    docker_output,
    find_in_bytes,
    find_in_tree,
    image_leaks,
    key_needles,
    raw_needles,
)
from tests.support.realparts import Agent, GitServer, PackageIndex, SSHKey, make_key, run

pytestmark = pytest.mark.engine


def _import_private(engine: Engine, image: str) -> str:
    script = "import privpkg; print(privpkg.VERSION)"
    return in_image(engine.docker, image, "python", "-c", script, network="host").strip()


def _assert_no_leak(engine: Engine, data_root: Path, image: str, key: SSHKey, output: str) -> None:
    needles = key_needles(key.private_bytes, key.passphrase)
    raw = raw_needles(key.private_bytes, key.passphrase)
    assert find_in_bytes(output.encode(), needles + raw) == []
    assert image_leaks(engine.docker, image, needles, BASE_IMAGE) == {}
    assert find_in_tree(data_root, needles) == []
    assert securebuild_leftovers() == []


def _assert_only_venv_and_app(engine: Engine, image: str, key: SSHKey) -> None:
    """The build adds /opt/venv and /app and nothing else: no mount point left by a
    secret, cache or bind mount, no cache, no secret file; and the image's history
    and config do not name the key that built it."""
    files = added_files(engine.docker, image, BASE_IMAGE, env=engine.child_env())
    assert any(p.startswith("/opt/venv/lib/") for p in files)
    assert "/app/app/__main__.py" in files
    # Folders that already exist in the base image show up when a step touches them.
    others = {p: size for p, size in files.items() if not p.startswith(("/opt/venv/", "/app/"))}
    assert set(others) <= {"/opt", "/opt/venv", "/app", "/etc"}, sorted(others)
    assert set(others.values()) <= {0}, others
    for where in (["history", "--no-trunc", "--format", "{{.CreatedBy}}"], ["image", "inspect"]):
        shown = docker_output(engine.docker, *where, image).decode()
        assert key.fingerprint not in shown, where
        assert "SSH_IDENTITY" not in shown, where


def _assert_one_line_error(
    done: subprocess.CompletedProcess[str], code: int, *phrases: str
) -> None:
    assert done.returncode == code, done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("securebuild: error: "), done.stderr[-2000:]
    for phrase in phrases:
        assert phrase in last, last


def test_agent_key_builds_and_leaks_nothing(
    project: Project, agent: Agent, lab: Lab, engine: Engine, data_root: Path
) -> None:
    """A key in the user's ssh-agent builds the image and leaves no trace."""
    agent.add(lab.deploy)
    done = project.inv("build-image", env={"SSH_AUTH_SOCK": str(agent.socket)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert _import_private(engine, project.image) == "1.0.0"
    assert lab.deploy.fingerprint in done.stderr
    _assert_no_leak(engine, data_root, project.image, lab.deploy, done.stdout + done.stderr)
    _assert_only_venv_and_app(engine, project.image, lab.deploy)


def test_keyring_key_builds_and_leaks_nothing(
    project: Project, lab: Lab, engine: Engine, data_root: Path, keyring_ready: None
) -> None:
    """A key stored with `inv store-key` builds through an ephemeral agent."""
    stored = project.inv("store-key", "--key-file", str(lab.deploy.private))
    assert stored.returncode == 0, stored.stderr
    try:
        done = project.inv("build-image", env={"SECUREBUILD_KEY_SOURCE": "keyring"})
        assert done.returncode == 0, done.stderr[-3000:]
        assert "from keyring" in done.stderr
        assert _import_private(engine, project.image) == "1.0.0"
        _assert_no_leak(engine, data_root, project.image, lab.deploy, done.stdout + done.stderr)
    finally:
        forgot = project.inv("forget-key")
    assert forgot.returncode == 0, forgot.stderr
    assert "removed" in forgot.stderr


def test_encrypted_key_file_with_keyring_passphrase(
    project: Project, lab: Lab, engine: Engine, data_root: Path, keyring_ready: None
) -> None:
    """An encrypted key file builds with its passphrase taken from the keyring."""
    key = lab.encrypted
    stored = project.inv(
        "store-key",
        "--key-file",
        str(key.private),
        "--passphrase-only",
        input=(key.passphrase + "\n").encode(),
    )
    assert stored.returncode == 0, stored.stderr
    try:
        done = project.inv(
            "build-image",
            env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(key.private)},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "from file" in done.stderr
        assert _import_private(engine, project.image) == "1.0.0"
        _assert_no_leak(engine, data_root, project.image, key, done.stdout + done.stderr)
    finally:
        project.inv("forget-key")


def test_selected_agent_key_hides_the_others(
    project: Project, agent: Agent, lab: Lab, engine: Engine
) -> None:
    """With agent_key naming the unauthorized key, the authorized one is not usable."""
    agent.add(lab.other)
    agent.add(lab.deploy)
    env = {"SSH_AUTH_SOCK": str(agent.socket)}
    refused = project.inv("build-image", env={**env, "SECUREBUILD_AGENT_KEY": "other-key"})
    _assert_one_line_error(refused, 3, "refused the forwarded key")
    assert securebuild_leftovers() == []

    chosen = project.inv(
        "build-image", env={**env, "SECUREBUILD_AGENT_KEY": lab.deploy.fingerprint}
    )
    assert chosen.returncode == 0, chosen.stderr[-3000:]
    assert _import_private(engine, project.image) == "1.0.0"

    # The private step's cache belongs to the key that filled it: the other key
    # gets no wheels from it after a successful build of the very same files.
    again = project.inv("build-image", env={**env, "SECUREBUILD_AGENT_KEY": "other-key"})
    _assert_one_line_error(again, 3, "refused the forwarded key")


def test_failed_build_cleans_up(project: Project, lab: Lab) -> None:
    """A build that fails (tag missing) ends with one line and leaves no agent behind."""
    project.requirements(f"privpkg @ git+{lab.private_url}@v9.9.9\n")
    done = project.inv(
        "build-image",
        env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)},
    )
    _assert_one_line_error(done, 2, "cannot be resolved", "v9.9.9")
    assert securebuild_leftovers() == []
    needles = key_needles(lab.deploy.private_bytes)
    assert find_in_bytes((done.stdout + done.stderr).encode(), needles) == []


def _ssh_logins(project: Project, lab: Lab, dockerfile: Path | None = None) -> int:
    """SSH logins at the git host while ``project`` builds two private packages
    that live on it and were never fetched before, each pinned by a tag."""
    names = [f"mux{uuid.uuid4().hex[:8]}" for _ in range(2)]
    lines = [f"{name} @ git+{lab.server.create_package(name, 'v3.0.0', '3.0.0')}@v3.0.0\n"
             for name in names]  # fmt: skip
    project.requirements("".join(lines))
    before = lab.server.log.read_text(errors="replace").count("Accepted publickey")
    env = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}
    if dockerfile is not None:
        env["SECUREBUILD_DOCKERFILE"] = str(dockerfile)
    done = project.inv("build-image", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return lab.server.log.read_text(errors="replace").count("Accepted publickey") - before


def test_one_ssh_login_serves_every_fetch_of_a_step(
    project: Project, lab: Lab, tmp_path: Path
) -> None:
    """uv asks the host twice for each tag (as a branch, then as a tag): with the
    template's shared connection, four fetches cost one SSH login, or two when
    both packages' first fetches race to open it; the same template without the
    shared connection logs in four times."""
    template = template_path().read_text(encoding="utf-8")
    shared = " -o ControlMaster=auto -o ControlPath=/tmp/securebuild-ssh-%C -o ControlPersist=10"
    assert shared in template
    unshared = tmp_path / "Dockerfile.unshared"
    unshared.write_text(template.replace(shared, ""), encoding="utf-8")
    assert _ssh_logins(project, lab, unshared) == 4
    assert 1 <= _ssh_logins(project, lab) <= 2
    assert securebuild_leftovers() == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_build_cleans_up(project: Project, lab: Lab, signum: int) -> None:
    """Ctrl-C (or SIGTERM) mid-build removes the ephemeral agent and its directory."""
    project.requirements(f"slowpkg @ git+{lab.slow_url}@v0.1.0\n")
    before = set(Path(tempfile.gettempdir()).glob("securebuild-*"))
    env = {
        **project.env,
        "SECUREBUILD_KEY_SOURCE": "file",
        "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "build-image"],
        cwd=project.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        sockets: list[Path] = []
        while time.monotonic() < deadline and not sockets:
            new = set(Path(tempfile.gettempdir()).glob("securebuild-*")) - before
            sockets = [d / "agent.sock" for d in new if (d / "agent.sock").exists()]
            time.sleep(0.1)
        assert sockets, "the build never started its ephemeral agent"
        time.sleep(3)  # inside the slow package's build now
        assert process.poll() is None, "the build ended before it could be interrupted"
        if signum == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    assert process.returncode != 0
    assert "Traceback" not in output
    assert securebuild_leftovers() == []
    assert not any(s.parent.exists() for s in sockets)


def test_init_then_build(project: Project, lab: Lab, engine: Engine, base_image: str) -> None:
    """A Dockerfile written by `init` builds the app with its private dependency."""
    scaffold = project.inv("init", "--base-image", base_image)
    assert scaffold.returncode == 0, scaffold.stderr
    assert "created Dockerfile" in scaffold.stderr
    done = project.inv(
        "build-image",
        env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"--file {project.path / 'Dockerfile'}" not in done.stderr  # argv is never echoed
    assert _import_private(engine, project.image) == "1.0.0"


def test_doctor_passes_where_a_build_works(project: Project, lab: Lab, keyring_ready: None) -> None:
    """Against the real engine, sshd pins and keyring, every doctor check is ok."""
    done = project.inv(
        "doctor",
        env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines
    assert all(line.startswith("ok") for line in lines), done.stdout
    assert any("known_hosts: pinned: 127.0.0.1:" in line for line in lines)


@pytest.mark.parametrize("needs_setuptools", [False, True], ids=["plain", "needs-setuptools"])
def test_pip_builds_with_installer_pip(
    project: Project, lab: Lab, engine: Engine, needs_setuptools: bool
) -> None:
    """installer=pip (as on a platform uv has no wheel for) builds the same image with
    pip: the private package over SSH and the index packages, with only /opt/venv
    and /app added and no key anywhere. pip leaves the venv; setuptools too,
    unless an installed package requires it."""
    extra = ""
    if needs_setuptools:
        name = f"usesst{uuid.uuid4().hex[:8]}"
        url = lab.server.create_package(name, "v1.0.0", "1.0.0", dependencies=("setuptools",))
        extra = f"{name} @ git+{url}@v1.0.0\n"
    project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\n{extra}six\n")
    env = {
        "SECUREBUILD_KEY_SOURCE": "file",
        "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
        "SECUREBUILD_INSTALLER": "pip",
    }
    done = project.inv("build-image", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "securebuild: installer=pip: pip installs, not uv" in done.stderr
    assert _import_private(engine, project.image) == "1.0.0"
    found = "[bool(importlib.util.find_spec(m)) for m in ('pip', 'setuptools')]"
    script = f"import importlib.util; print({found})"
    kept = in_image(engine.docker, project.image, "python", "-c", script).strip()
    assert kept == f"[False, {needs_setuptools}]"
    _assert_only_venv_and_app(engine, project.image, lab.deploy)
    needles = key_needles(lab.deploy.private_bytes)
    assert image_leaks(engine.docker, project.image, needles, BASE_IMAGE) == {}
    assert find_in_bytes((done.stdout + done.stderr).encode(), needles) == []


def test_uv_that_cannot_be_installed_fails_rather_than_falls_back(
    project: Project, lab: Lab, tmp_path: Path
) -> None:
    """On a platform uv has wheels for, an index that does not serve uv (or a network
    fault) fails the build in one line: a quiet fallback to pip would be kept in
    BuildKit's cache for every later build."""
    wheels = tmp_path / "no-uv"
    wheels.mkdir()
    for wheel in lab.index.wheels.glob("*.whl"):
        if not wheel.name.startswith("uv-"):
            (wheels / wheel.name).symlink_to(wheel)
    index = PackageIndex(wheels).start()
    try:
        (project.path / "pip.conf").write_text(index.pip_config())
        project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\n")
        key = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}
        # Another index in the pip config: the installers step runs again (INDEX_CONFIG).
        done = project.inv("build-image", env=key)
    finally:
        index.stop()
    _assert_one_line_error(done, 6, "uv could not be installed in the build", "installer=pip")
    assert re.search(r"(?m)^#\d+ [\d.]+ ERROR: No matching distribution found for uv$", done.stderr)


def _cached(output: str, stage: str) -> bool:
    """Whether the build output shows ``stage``'s RUN step taken from the cache."""
    steps = re.findall(rf"(?m)^#(\d+) \[{re.escape(stage)} [^\]]*\] RUN", output)
    assert steps, f"no RUN step of {stage} in the build output"
    return all(re.search(rf"(?m)^#{n} CACHED$", output) for n in steps)


def test_another_index_reruns_the_installs_a_rotated_token_does_not(
    project: Project, lab: Lab
) -> None:
    """BuildKit keys a step by its args, not by what a secret mount holds: the pip
    config's index settings reach the cache keys as a digest without credentials."""
    key = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}
    project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\nsix\n")
    first = project.inv("build-image", env=key)
    assert first.returncode == 0, first.stderr[-3000:]

    config = project.path / "pip.conf"
    config.write_text(lab.index.pip_config().replace("http://", "http://ci:rotated-token@"))
    rotated = project.inv("build-image", env=key)
    assert rotated.returncode == 0, rotated.stderr[-3000:]
    stages = ("installers", "installed-wheels", "runtime-wheels")
    assert [_cached(rotated.stderr, stage) for stage in stages] == [True, True, True]

    other = PackageIndex(lab.index.wheels).start()  # the same wheels, at another address
    try:
        config.write_text(other.pip_config())
        moved = project.inv("build-image", env=key)
    finally:
        other.stop()
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert [_cached(moved.stderr, stage) for stage in stages] == [False, False, False]
    assert "rotated-token" not in moved.stderr + rotated.stderr


@contextlib.contextmanager
def _derived_base(engine: Engine, base_image: str, steps: str) -> Iterator[str]:
    """A base image of the test's own: ``base_image`` with the Dockerfile ``steps``."""
    name = f"sbt-derived-base-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [engine.docker, "build", "--network", "none", "-q", "-t", name, "-"],
        input=f"FROM {base_image}\n{steps}",
        text=True,
        capture_output=True,
        check=True,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    try:
        yield name
    finally:
        subprocess.run([engine.docker, "image", "rm", "-f", name], capture_output=True)


def _over_ssh_then_from_a_wheelhouse(
    project: Project, lab: Lab, base: str, check: Callable[[], None]
) -> dict[str, str]:
    """build-image, vendor, build-image again (from the wheelhouse) on ``base``,
    calling ``check`` after each build; returns the environment they ran with."""
    env = {
        "SECUREBUILD_KEY_SOURCE": "file",
        "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
        "SECUREBUILD_BASE_IMAGE": base,
    }
    for step in ("build-image", "vendor", "build-image"):
        done = project.inv(step, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        if step == "build-image":
            check()
    assert "no key, no network" in done.stderr  # the second build: from the wheelhouse
    return env


def test_a_base_image_with_its_own_opt_venv(
    project: Project, lab: Lab, engine: Engine, base_image: str
) -> None:
    """/opt/venv is the tool's: a base image's own is replaced, over SSH and from a
    wheelhouse alike, never nested in or mixed with ours."""
    look = "import os, privpkg; print(privpkg.VERSION, sorted(os.listdir('/opt/venv')))"

    def check() -> None:
        seen = in_image(engine.docker, project.image, "python", "-c", look)
        assert seen.split()[0] == "1.0.0", seen
        assert "'bin'" in seen
        assert "base-marker" not in seen
        assert "url-venv" not in seen

    steps = "RUN python -m venv /opt/venv && touch /opt/venv/base-marker\n"
    with _derived_base(engine, base_image, steps) as venv_base:
        _over_ssh_then_from_a_wheelhouse(project, lab, venv_base, check)


def test_a_base_image_that_runs_as_another_user(
    project: Project, lab: Lab, engine: Engine, base_image: str
) -> None:
    """A base image with a USER of its own builds (the build steps run as root),
    and the image runs as that user again, over SSH and from a wheelhouse alike.
    The app, private in the context (as under umask 077), is readable by that
    user, in group root here (as on OpenShift); a group-writable file (umask
    002) is not writable by it: the app stays root's."""
    look = "import os, privpkg; print(privpkg.VERSION, os.getuid(), os.getgid())"
    app = project.path / "app"
    (app / "helper.py").write_text("ANSWER = 42\n")
    for path in app.iterdir():
        path.chmod(0o600)
    app.chmod(0o700)
    (app / "shared.py").write_text("SHARED = 1\n")
    (app / "shared.py").chmod(0o664)
    read = (
        "import os, app.helper as h; p = '/app/app/helper.py'; s = os.stat(p);"
        " w = [os.access(f, os.W_OK) for f in (p, '/app/app/shared.py', '/app/app')];"
        " print(h.ANSWER, s.st_uid, *w)"
    )

    def check() -> None:
        seen = in_image(engine.docker, project.image, "python", "-c", look)
        assert seen.split() == ["1.0.0", "4321", "0"]
        assert in_image(engine.docker, project.image, "python", "-c", read).split() == [
            "42", "0", "False", "False", "False"
        ]  # fmt: skip
        user = docker_output(
            engine.docker, "image", "inspect", "--format", "{{.Config.User}}", project.image
        )
        assert user.decode().strip() == "app"

    steps = "RUN useradd --uid 4321 --gid 0 --create-home app\nUSER app\n"
    with _derived_base(engine, base_image, steps) as user_base:
        env = _over_ssh_then_from_a_wheelhouse(project, lab, user_base, check)
    # A base image without a USER keeps none: root, as before.
    done = project.inv("build-image", env={**env, "SECUREBUILD_BASE_IMAGE": base_image})
    assert done.returncode == 0, done.stderr[-3000:]
    assert in_image(engine.docker, project.image, "python", "-c", look).split()[1] == "0"


def test_a_base_image_that_cannot_be_pulled_is_one_line(project: Project, lab: Lab) -> None:
    """A base image the engine lacks is pulled before the build (its user is read
    from it); one that cannot be pulled is named in one line."""
    missing = "127.0.0.1:9/securebuild-test/no-such-base:1"
    done = project.inv(
        "build-image",
        env={
            "SECUREBUILD_KEY_SOURCE": "file",
            "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
            "SECUREBUILD_BASE_IMAGE": missing,
        },
    )
    _assert_one_line_error(done, 5, f"cannot pull the base image {missing}")
    assert f"securebuild: pulling {missing} (the base image)" in done.stderr
    assert securebuild_leftovers() == []


def test_a_key_file_with_its_certificate_logs_in_where_only_certificates_do(
    project: Project, tmp_path: Path, engine: Engine, data_root: Path
) -> None:
    """A git host that trusts a CA and no single key (TrustedUserCAKeys, no
    authorized_keys): the key file's certificate beside it, as ssh finds it,
    reaches the build with the key and logs in; without it the host refuses."""
    ca = make_key(tmp_path / "ca", "ca")
    server = GitServer(
        tmp_path / "git", extra_config=(f"TrustedUserCAKeys {ca.private}.pub",)
    ).start()
    try:
        url = server.create_package("certpkg", "v1.0.0", "1.0.0")
        key = make_key(tmp_path / "keys", "deploy")
        run(
            "ssh-keygen",
            "-q",
            "-s",
            str(ca.private),
            "-I",
            "deploy",
            "-n",
            server.user,
            f"{key.private}.pub",
        )
        (project.path / "known_hosts").write_text(server.known_hosts_line())
        project.requirements(f"certpkg @ git+{url}@v1.0.0\n")
        (project.path / "app" / "__main__.py").write_text("import certpkg\n")
        env = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(key.private)}
        done = project.inv("build-image", env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        look = "import certpkg; print(certpkg.VERSION)"
        assert in_image(engine.docker, project.image, "python", "-c", look).strip() == "1.0.0"
        _assert_no_leak(engine, data_root, project.image, key, done.stdout + done.stderr)

        Path(f"{key.private}-cert.pub").unlink()
        refused = project.inv("build-image", "--no-cache", env=env)
        _assert_one_line_error(refused, 3, "refused the forwarded key")
    finally:
        server.stop()
