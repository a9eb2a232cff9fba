"""Property 3: an independent scanner (detect-secrets) finds the key where it is, and only there.

detect-secrets runs over the extracted filesystem of every layer of `docker
save`, and over the image's history and config as text (see
tests/support/scanner.py for why the scan is scoped to private-key findings).
The same key is built into one image the old insecure way and forwarded to a
build of this tool, so the scanner must find it in the first and nothing of it
in the second. Layers are scanned once per module: the base image's layer is
shared by both images and takes the longest.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.conftest import need
from tests.support.fixtures import Lab, Project
from tests.support.leaks import _base_layers, docker_output, key_needles
from tests.support.old_recipe import old_way_image
from tests.support.realparts import SSHKey, make_key
from tests.support.scanner import (
    KEY_BYTES,
    PRIVATE_KEY,
    Finding,
    extract_layer,
    save_image,
    scan_tree,
    write_needles,
)

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def scanner_key(tmp_path_factory: pytest.TempPathFactory, lab: Lab) -> SSHKey:
    """A key made for this module, allowed to read the lab's private packages."""
    try:
        import detect_secrets  # noqa: F401
    except ImportError:
        need(False, "detect-secrets is not installed; pip install -e '.[test]'")
    key = make_key(tmp_path_factory.mktemp("scanner-keys"), "scanner-key")
    lab.server.authorize(key)
    return key


class LayerScans:
    """detect-secrets findings per layer diff id (a layer's content is its digest)."""

    def __init__(self, root: Path, needles_file: Path) -> None:
        self.root, self.needles_file = root, needles_file
        self.by_layer: dict[str, list[Finding]] = {}

    def image(self, engine: Engine, image: str) -> dict[str, list[Finding]]:
        """Findings in every layer of ``image``, its history and its config."""
        work = self.root / image.replace(":", "_").replace("/", "_")
        saved = save_image(engine.docker, image, work / "saved")
        found: dict[str, list[Finding]] = {}
        for n, (diff_id, tarball) in enumerate(saved.layers.items()):
            if diff_id not in self.by_layer:
                tree = extract_layer(tarball, work / f"layer-{n}")
                self.by_layer[diff_id] = scan_tree(tree, self.needles_file)
                subprocess.run(["rm", "-rf", str(tree)], check=True)
            found[f"layer {n} {diff_id}"] = self.by_layer[diff_id]
        text = work / "text"
        text.mkdir()
        (text / "history.txt").write_bytes(
            docker_output(
                engine.docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}", image
            )
        )
        (text / "config.json").write_bytes(saved.config.read_bytes())
        (text / "inspect.json").write_bytes(docker_output(engine.docker, "image", "inspect", image))
        found["history and config"] = scan_tree(text, self.needles_file)
        subprocess.run(["rm", "-rf", str(work)], check=True)  # a saved image is large
        return found


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory, scanner_key: SSHKey) -> Iterator[LayerScans]:
    """Layer scans shared by the module's tests (the base layer is scanned once)."""
    root = tmp_path_factory.mktemp("scans")
    needles = write_needles(key_needles(scanner_key.private_bytes), root / "needles.txt")
    yield LayerScans(root, needles)
    subprocess.run(["rm", "-rf", str(root)], check=False)


def _added(found: dict[str, list[Finding]], base: set[str]) -> dict[str, list[Finding]]:
    """Findings outside the base image's own layers (base images may ship test keys)."""
    return {where: hits for where, hits in found.items() if where.split()[-1] not in base}


def test_detect_secrets_finds_the_old_recipe(
    tmp_path: Path, engine: Engine, base_image: str, scanner_key: SSHKey, scans: LayerScans
) -> None:
    """The key written to /root/.ssh/id_rsa and passed as a build arg is found by detect-secrets."""
    name = f"sbt-old-recipe-scan-{uuid.uuid4().hex[:10]}"
    with old_way_image(engine, base_image, scanner_key.private_bytes, tmp_path, name) as image:
        found = scans.image(engine, image)
    added = _added(found, _base_layers(engine.docker, base_image))
    in_layers = {
        (h.path, h.kind) for where, hits in added.items() if where.startswith("layer") for h in hits
    }
    assert ("root/.ssh/id_rsa", PRIVATE_KEY) in in_layers, found
    assert ("root/.ssh/id_rsa", KEY_BYTES) in in_layers, found
    kinds = {h.kind for h in found["history and config"]}
    assert KEY_BYTES in kinds, found["history and config"]
    assert PRIVATE_KEY in kinds, found["history and config"]


def test_detect_secrets_finds_nothing_in_our_image(
    project: Project, engine: Engine, base_image: str, scanner_key: SSHKey, scans: LayerScans
) -> None:
    """The same key, forwarded by `inv build-image`: no private-key finding in any layer,
    the history or the config, and no byte of the key even in the base image's layers."""
    done = project.inv(
        "build-image",
        env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(scanner_key.private)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = scans.image(engine, project.image)
    base = _base_layers(engine.docker, base_image)
    layers = [where for where in found if where.startswith("layer")]
    assert len(layers) > len(base)  # the build's own layers were there, and scanned
    key_hits = {where: [h for h in hits if h.kind == KEY_BYTES] for where, hits in found.items()}
    assert {where: hits for where, hits in key_hits.items() if hits} == {}
    added = _added(found, base)
    assert {where: hits for where, hits in added.items() if hits} == {}
