"""audit reads every layer as the engines save them, and fails in one line when it cannot.

A stand-in docker client serves an image's inspect output, history and `docker
save` archive, made here: plain, gzip and zstd layers (the containerd image
store saves registry blobs as they are), a base layer that ships a test key as
base images do, and the broken archives some engines write.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from securebuild_tasks.audit import audit_image, run_audit
from securebuild_tasks.errors import EngineError
from securebuild_tasks.settings import Settings
from tests.support.cli import stand_in_docker


@pytest.fixture(scope="module")
def pem() -> bytes:
    """A private key block made for this run (none is committed to the repository)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


SERVER = """\
#!/bin/sh
case "$1 $2" in
  "image inspect") cat "$IMAGES/inspect-$3.json" ;;
  "history --no-trunc") cat "$IMAGES/history.txt" ;;
  "save "*) cat "$IMAGES/save.tar" ;;
  *) exit 1 ;;
esac
"""


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def _image(
    folder: Path,
    layers: list[dict[str, bytes]],
    *,
    base: int,
    compress: str = "",
    config: Any = None,
    drop_blob: bool = False,
) -> str:
    """Write the stand-in's files for image ``app`` (its first ``base`` layers are
    base image ``base``'s); return the docker executable."""
    folder.mkdir(parents=True, exist_ok=True)
    diff_ids, blobs = [], {}
    for files in layers:
        raw = _tar(files)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        blob = _compress(raw, compress)
        blobs["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    app = {"RootFS": {"Layers": diff_ids}, "Config": {"Env": ["PATH=/usr/bin"]}}
    if config is not None:
        app["Config"] = config["Config"]
    (folder / "inspect-app.json").write_text(json.dumps([app]))
    (folder / "inspect-base.json").write_text(json.dumps([{"RootFS": {"Layers": diff_ids[:base]}}]))
    (folder / "history.txt").write_text('/bin/sh -c #(nop) CMD ["python"]\n')
    manifest = [{"Config": "blobs/sha256/" + "c" * 64, "Layers": list(blobs)}]
    if drop_blob:
        blobs.popitem()
    with tarfile.open(folder / "save.tar", "w") as archive:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *blobs.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return str(stand_in_docker(folder, SERVER))


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMAGES", str(tmp_path / "image"))
    return tmp_path / "image"


@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
def test_base_layers_are_told_apart_however_they_are_saved(
    images: Path, compress: str, pem: bytes
) -> None:
    """A base layer's test key is the base image's business, whether the engine saved the
    layer plain, gzip'd or zstd'd; the same key in the build's own layer is a finding."""
    layers = [{"usr/share/gnutls/test.key": pem}, {"app/main.py": b"print(1)\n"}]
    docker = _image(images, layers, base=1, compress=compress)
    assert audit_image(docker, "app", needles=[], base_image="base") == []
    docker = _image(images, layers, base=0, compress=compress)
    found = audit_image(docker, "app", needles=[], base_image="base")
    assert [(f.where.split(": ")[-1], f.what.split(" (")[0]) for f in found] == [
        ("/usr/share/gnutls/test.key", "a private key block")
    ]


def test_an_image_without_config_is_searched(images: Path, pem: bytes) -> None:
    """Some engines print "Config": null: the layers are still searched."""
    docker = _image(images, [{"root/.ssh/id_rsa": pem}], base=0, config={"Config": None})
    found = audit_image(docker, "app", needles=[], base_image="")
    assert [f.where.split(": ")[-1] for f in found] == ["/root/.ssh/id_rsa"]


def test_a_layer_the_archive_lacks_is_one_error(images: Path) -> None:
    """A save archive that lists a layer it does not hold cannot pass as searched."""
    docker = _image(images, [{"a": b"1"}, {"b": b"2"}], base=0, drop_blob=True)
    with pytest.raises(EngineError, match=r"lists layer .* but does not hold it"):
        audit_image(docker, "app", needles=[], base_image="")


def test_a_layer_that_is_no_tar_is_one_error(images: Path) -> None:
    """A damaged layer ends the audit in one line rather than a traceback or a pass."""
    docker = _image(images, [{"a": b"1"}], base=0, compress="gzip")
    saved = images / "save.tar"
    with tarfile.open(saved) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(saved, "w") as archive:
        for member, data in members:
            if member.name.startswith("blobs/"):
                data = gzip.compress(b"not a tar at all" * 100)
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    with pytest.raises(EngineError, match="cannot be read"):
        audit_image(docker, "app", needles=[], base_image="")


def test_audit_needs_no_client_that_can_build(images: Path) -> None:
    """An audit reads images: a docker client without buildx (its version answers
    nothing here) audits as well as any."""
    docker = _image(images, [{"app/main.py": b"print(1)\n"}], base=0)
    settings = Settings(docker=docker, key_source="file", base_image="base")
    assert run_audit(settings, "app") == []
