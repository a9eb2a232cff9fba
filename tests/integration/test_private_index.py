"""A private index's token reaches pip only as a secret mount, never the image."""

from __future__ import annotations

from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.integration.test_build_image import _assert_one_line_error, _import_private
from tests.support.fixtures import Lab, Project
from tests.support.leaks import docker_output
from tests.support.realparts import PackageIndex, PrivateIndex

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("via", ["netrc", "pip_config"])
def test_index_token_stays_out_of_the_image(
    project: Project,
    lab: Lab,
    engine: Engine,
    private_index: PrivateIndex,
    via: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Without credentials the index refuses; with them (netrc or pip.conf) the build
    works and the token is in no layer, history, config or build output."""
    env = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}
    # uv itself comes from an index of its own (pip, which installs it, says
    # nothing of an index that refused); every package, from the private index.
    tools = tmp_path / "tools"
    tools.mkdir()
    uv = next(lab.index.wheels.glob("uv-*.whl"))
    (tools / uv.name).symlink_to(uv)
    tools_index = PackageIndex(tools).start()
    request.addfinalizer(tools_index.stop)

    def pip_config(private: str) -> str:
        links = f"http://127.0.0.1:{tools_index.port}/ {private}"
        return f"[global]\nno-index = true\nfind-links = {links}\n"

    (project.path / "pip.conf").write_text(pip_config(f"http://127.0.0.1:{private_index.port}/"))
    refused = project.inv("build-image", env=env)
    _assert_one_line_error(refused, 3, f"index 127.0.0.1:{private_index.port} refused")

    project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\n# with credentials\n")
    if via == "netrc":
        netrc = tmp_path / "netrc"
        netrc.write_text(private_index.netrc())
        env["SECUREBUILD_NETRC"] = str(netrc)
    else:
        token_url = f"http://ci:{private_index.token}@127.0.0.1:{private_index.port}/"
        (project.path / "pip.conf").write_text(pip_config(token_url))
    done = project.inv("build-image", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _import_private(engine, project.image) == "1.0.0"

    token = private_index.token.encode()
    assert token not in (done.stdout + done.stderr).encode()
    assert token not in docker_output(engine.docker, "save", project.image)
    assert token not in docker_output(engine.docker, "history", "--no-trunc", project.image)
    assert token not in docker_output(engine.docker, "image", "inspect", project.image)
