"""Property 6: only a keyring that protects secrets holds the key, and nothing
falls back to ``~/.ssh/id_*``.

Through the real CLI: keyrings.alt's plain-text backend and keyring's ``fail``
backend are refused by ``store-key`` and ``build-image`` alike (in ``auto`` too,
even with a key already stored), unless ``allow_insecure_keyring`` opts in; and
a throwaway HOME whose ``~/.ssh/id_ed25519`` the git server accepts does not
make a build without a configured key source succeed.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.cli.test_bad_input import UserProject, one_line_error, user_project
from tests.support.fixtures import Lab, Project, securebuild_leftovers
from tests.support.leaks import find_in_bytes, key_needles
from tests.support.realparts import make_key

__all__ = ["user_project"]  # the fixture, used by name

PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"
FAIL = "keyring.backends.fail.Keyring"


def _keyring_home(tmp_path: Path) -> dict[str, str]:
    """HOME and XDG dirs of the test's own, so keyrings.alt writes only there."""
    home = tmp_path / "home"
    (home / ".local" / "share").mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "SECUREBUILD_KEYRING_SERVICE": f"sbt-p6-{uuid.uuid4().hex[:8]}",
    }


def _stored_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "home").rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("backend", "phrase"),
    [(PLAINTEXT, "does not protect secrets"), (FAIL, "no keyring backend")],
    ids=["plaintext", "fail"],
)
def test_weak_backends_refused_by_every_command(
    user_project: UserProject, tmp_path: Path, backend: str, phrase: str
) -> None:
    """store-key, build-image with key_source=keyring, and auto: each one line, exit 3,
    and nothing written where the backend keeps its secrets."""
    pytest.importorskip("keyrings.alt")
    key = make_key(tmp_path / "keys", "p6-key")
    env = {**_keyring_home(tmp_path), "PYTHON_KEYRING_BACKEND": backend}
    stored = user_project.inv("store-key", "--key-file", str(key.private), **env)
    line = one_line_error(stored, 3, phrase)
    assert find_in_bytes(line.encode(), key_needles(key.private_bytes)) == []
    assert _stored_files(tmp_path) == []
    built = user_project.inv(
        "build-image", **env, SECUREBUILD_KEY_SOURCE="keyring", SECUREBUILD_KEY_FILE=""
    )
    one_line_error(built, 3, phrase)
    auto = user_project.inv(
        "build-image", **env, SECUREBUILD_KEY_SOURCE="auto", SECUREBUILD_KEY_FILE=""
    )
    one_line_error(auto, 3, "no key source is usable", "keyring: ", phrase)


def test_plaintext_keyring_only_with_explicit_opt_in(
    user_project: UserProject, tmp_path: Path
) -> None:
    """With allow_insecure_keyring the plain-text backend stores and serves the key
    (the build gets as far as the engine); without it, the very same stored key is
    refused, in keyring and in auto mode."""
    pytest.importorskip("keyrings.alt")
    key = make_key(tmp_path / "keys", "p6-key")
    env = {
        **_keyring_home(tmp_path),
        "PYTHON_KEYRING_BACKEND": PLAINTEXT,
        "SECUREBUILD_KEY_FILE": "",
        "SECUREBUILD_KEY_SOURCE": "keyring",
        "SECUREBUILD_DOCKER": str(tmp_path / "no-docker-here"),
    }
    allowed = {**env, "SECUREBUILD_ALLOW_INSECURE_KEYRING": "true"}
    stored = user_project.inv("store-key", "--key-file", str(key.private), **allowed)
    assert stored.returncode == 0, stored.stderr
    assert _stored_files(tmp_path) != []  # a plain-text file now holds the key
    # The key source accepts the stored key; the build stops at the (missing) engine.
    past_key = user_project.inv("build-image", **allowed)
    one_line_error(past_key, 5, "no-docker-here")
    for source in ("keyring", "auto"):
        refused = user_project.inv("build-image", **{**env, "SECUREBUILD_KEY_SOURCE": source})
        one_line_error(refused, 3, "does not protect secrets")


def _ls_remote_with(key_file: Path, lab: Lab, known_hosts: Path) -> int:
    ssh = (
        f"ssh -i {key_file} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes"
        f" -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null"
    )
    done = subprocess.run(
        ["git", "ls-remote", lab.private_url],
        env={"PATH": "/usr/bin:/bin", "GIT_SSH_COMMAND": ssh},
        capture_output=True,
        check=False,
    )
    return done.returncode


@pytest.mark.engine
def test_no_fallback_to_a_working_key_in_home_ssh(
    project: Project, lab: Lab, tmp_path: Path
) -> None:
    """~/.ssh/id_ed25519 (and id_rsa) hold a key the git server accepts and
    ~/.ssh/known_hosts pins the server; with no agent, an empty keyring and no
    key_file, the build fails with one line (exit 3) instead of using them."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    for name in ("id_ed25519", "id_rsa"):
        shutil.copy(lab.deploy.private, home / ".ssh" / name)
        (home / ".ssh" / name).chmod(0o600)
    (home / ".ssh" / "known_hosts").write_text(lab.server.known_hosts_line())
    assert _ls_remote_with(home / ".ssh" / "id_ed25519", lab, home / ".ssh" / "known_hosts") == 0
    env = {
        "HOME": str(home),
        "SECUREBUILD_KNOWN_HOSTS": "",  # the default, ~/.ssh/known_hosts, of that HOME
        "SECUREBUILD_KEYRING_SERVICE": f"sbt-p6-{uuid.uuid4().hex[:8]}",  # nothing stored
    }
    done = project.inv("build-image", env=env)
    line = one_line_error(done, 3, "no key source is usable", "file: no key_file is set")
    assert "id_ed25519" not in line
    assert (
        find_in_bytes((done.stdout + done.stderr).encode(), key_needles(lab.deploy.private_bytes))
        == []
    )
    assert securebuild_leftovers() == []
