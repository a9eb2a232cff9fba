"""A CA bundle for TLS-inspecting proxies reaches pip as a secret, never a layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.integration.test_build_image import _assert_one_line_error, _import_private
from tests.support.fixtures import BASE_IMAGE, Lab, Project
from tests.support.leaks import image_leaks, pem_needles
from tests.support.tls import TLSPackageIndex, make_ca_and_server_cert

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def tls_index(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TLSPackageIndex, Path]]:
    """The lab's wheels served over HTTPS by a certificate of a private CA."""
    ca, cert, key = make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))
    index = TLSPackageIndex(lab.index.wheels, cert, key).start()
    try:
        yield index, ca
    finally:
        index.stop()


def test_ca_bundle_lets_pip_trust_the_index(
    project: Project, lab: Lab, engine: Engine, tls_index: tuple[TLSPackageIndex, Path]
) -> None:
    """Without the CA pip refuses the index; with it the build works and the CA is in no layer."""
    index, ca = tls_index
    (project.path / "pip.conf").write_text(index.pip_config())
    env = {"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)}

    refused = project.inv("build-image", env=env)
    _assert_one_line_error(refused, 6, "TLS certificate is not trusted", "ca_bundle")

    project.requirements(f"privpkg @ git+{lab.private_url}@v1.0.0\n# with CA\n")
    done = project.inv("build-image", env={**env, "SECUREBUILD_CA_BUNDLE": str(ca)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert _import_private(engine, project.image) == "1.0.0"
    assert image_leaks(engine.docker, project.image, pem_needles(ca.read_bytes()), BASE_IMAGE) == {}
