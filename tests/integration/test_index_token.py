"""index_url: a private index's token from the keyring or the environment, never the image.

The index is real (HTTP Basic, PEP 503 layout) and the only one the build may
use: without the token pip cannot even fetch setuptools to build the private
git package, so a working build proves the token reached pip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.integration.test_build_image import _assert_one_line_error, _import_private
from tests.support.fixtures import Lab, Project, in_image, securebuild_leftovers
from tests.support.leaks import docker_output, find_in_tree
from tests.support.realparts import PrivateIndex

pytestmark = pytest.mark.engine


def _index_env(lab: Lab, index: PrivateIndex) -> dict[str, str]:
    """Only the private index, through index_url; no pip.conf, no .netrc file."""
    return {
        "SECUREBUILD_KEY_SOURCE": "file",
        "SECUREBUILD_KEY_FILE": str(lab.deploy.private),
        "SECUREBUILD_PIP_CONFIG": "",
        "SECUREBUILD_INDEX_URL": index.simple_url,
        "SECUREBUILD_INDEX_USERNAME": index.user,
    }


def _runs_six(engine: Engine, image: str) -> str:
    script = "import six; print(six.__version__)"
    return in_image(engine.docker, image, "python", "-c", script).strip()


@pytest.mark.parametrize("source", ["keyring", "environment"])
def test_index_token_from_keyring_or_environment(
    project: Project,
    lab: Lab,
    engine: Engine,
    private_index: PrivateIndex,
    keyring_ready: None,
    source: str,
) -> None:
    """The build gets the index through index_url and its token from the keyring
    (`inv store-token`, piped) or SECUREBUILD_INDEX_TOKEN; the token is in no layer,
    history, config, build output, --json summary or file left in the temp dir."""
    token = private_index.token
    env = _index_env(lab, private_index)
    if source == "keyring":
        entry = f"index-token-{project.image.split(':')[0]}"
        env["SECUREBUILD_KEYRING_TOKEN"] = entry
        stored = project.inv("store-token", env=env, input=f"{token}\n".encode())
        assert stored.returncode == 0, stored.stderr
        assert f"{lab.keyring_service}/{entry}" in stored.stderr
        assert token not in stored.stdout + stored.stderr
    else:
        env["SECUREBUILD_INDEX_TOKEN"] = token
    project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\nsix\n# {source}\n")
    try:
        done = project.inv("build-image", "--json", env=env)
    finally:
        if source == "keyring":
            forgotten = project.inv("forget-token", env=env)
            assert "removed" in forgotten.stderr, forgotten.stderr
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"index token from {'keyring' if source == 'keyring' else 'SECUREBUILD_INDEX'}" in (
        done.stderr
    )
    assert _import_private(engine, project.image) == "1.0.0"
    assert _runs_six(engine, project.image)

    needle = token.encode()
    assert needle not in (done.stdout + done.stderr).encode()
    assert '"image"' in done.stdout  # the --json summary was searched too
    assert needle not in docker_output(engine.docker, "save", project.image)
    assert needle not in docker_output(engine.docker, "history", "--no-trunc", project.image)
    assert needle not in docker_output(engine.docker, "image", "inspect", project.image)
    assert securebuild_leftovers() == []
    assert find_in_tree(Path(tempfile.gettempdir()), [needle]) == []


def test_wrong_index_token_fails_with_one_line(
    project: Project, lab: Lab, private_index: PrivateIndex
) -> None:
    """A refused token ends with one line naming the index (host:port), not the token,
    exit code 3, and no .netrc left behind."""
    wrong = f"tok-wrong-{private_index.token[-8:]}x"
    env = {**_index_env(lab, private_index), "SECUREBUILD_INDEX_TOKEN": wrong}
    # six is resolved on the index at every build (the private package's own
    # wheel may come from the installer's cache without asking the index).
    project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\nsix\n# wrong token\n")
    done = project.inv("build-image", env=env)
    _assert_one_line_error(done, 3, f"127.0.0.1:{private_index.port}", "refused the credentials")
    last = done.stderr.strip().splitlines()[-1]
    assert wrong not in last
    assert private_index.token not in done.stderr + done.stdout
    assert securebuild_leftovers() == []
    assert find_in_tree(Path(tempfile.gettempdir()), [wrong.encode()]) == []


def test_lock_resolves_through_the_index_with_the_token(
    project: Project, lab: Lab, private_index: PrivateIndex
) -> None:
    """`inv lock` (uv inside the image) reaches the index through index_url with the
    token from the environment; the lock pins six from it with a hash, and the token
    is in neither the lock nor the output."""
    env = {**_index_env(lab, private_index), "SECUREBUILD_INDEX_TOKEN": private_index.token}
    (project.path / "requirements.in").write_text(
        f"# {project.image}\nprivpkg @ git+{lab.private_url}@v1.0.0\nsix\n"
    )
    done = project.inv("lock", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lock = (project.path / "requirements.lock").read_text()
    assert "six==" in lock
    assert "--hash=sha256:" in lock
    assert private_index.token not in lock + done.stdout + done.stderr
    assert securebuild_leftovers() == []
