"""Host keys inside the build: pinned entries only, strict checking, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_build_image import _assert_one_line_error
from tests.support.fixtures import Lab, Project, securebuild_leftovers
from tests.support.realparts import free_port, make_key

pytestmark = pytest.mark.engine


def _file_key_env(lab: Lab) -> dict[str, str]:
    return {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}


def test_changed_host_key_fails_closed(project: Project, lab: Lab, tmp_path: Path) -> None:
    """A known_hosts entry with another key for the same host stops the build, naming it."""
    impostor = make_key(tmp_path / "impostor", "impostor-host-key")
    kind, body = impostor.public_line.split()[:2]
    (project.path / "known_hosts").write_text(f"[127.0.0.1]:{lab.server.port} {kind} {body}\n")
    done = project.inv("build-image", env=_file_key_env(lab))
    _assert_one_line_error(done, 4, f"127.0.0.1]:{lab.server.port}")
    assert securebuild_leftovers() == []


def test_unreachable_git_host(project: Project, lab: Lab) -> None:
    """A pinned host that does not answer is reported as unreachable, with the port."""
    port = free_port()
    url = lab.private_url.replace(f":{lab.server.port}/", f":{port}/")
    project.requirements(f"privpkg @ git+{url}@v1.0.0\n")
    line = lab.server.known_hosts_line().replace(f":{lab.server.port} ", f":{port} ")
    (project.path / "known_hosts").write_text(line)
    done = project.inv("build-image", env=_file_key_env(lab))
    _assert_one_line_error(done, 6, f"port {port} is unreachable")
    assert securebuild_leftovers() == []
