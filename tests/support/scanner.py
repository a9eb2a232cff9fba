"""An independent secret scanner (Yelp's detect-secrets) over a saved image.

`docker save` is unpacked and every layer's tarball is extracted into a
directory of its own, which detect-secrets then scans file by file, together
with the image's history and config as text. Nothing here shares code with the
product's `audit` or with the grep-based checks in leaks.py.

The scan is scoped to private-key findings: detect-secrets' own
PrivateKeyDetector (PEM/OpenSSH/PuTTY private-key markers) plus
`KeyBytesDetector`, which flags the test key's own base64 windows. Its other
plugins hunt for high-entropy strings and cloud tokens, which a Debian base
image is full of (hashes in package metadata, test vectors) and which vary with
every base image update; enabling them would make the result depend on the base
image rather than on the tool. The heuristic false-positive filters are turned
off too: they can only hide findings, so the scan is stricter without them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PLUGIN_FILE = Path(__file__).with_name("detect_secrets_key_plugin.py")
PRIVATE_KEY = "Private Key"  # PrivateKeyDetector's secret type
KEY_BYTES = "Bytes of the test's private key"  # KeyBytesDetector's


@dataclass(frozen=True)
class Finding:
    """One detect-secrets finding: which file (relative to the scanned root) and what."""

    path: str
    kind: str


@dataclass(frozen=True)
class SavedImage:
    """An image unpacked from `docker save`: its layers (by diff id) and config."""

    layers: dict[str, Path]  # diff id -> layer.tar, in image order
    config: Path


def save_image(docker: str, image: str, dest: Path) -> SavedImage:
    """`docker save` ``image`` and unpack it under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "image.tar"
    subprocess.run([docker, "save", "--output", str(archive), image], check=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(dest)], check=True)
    archive.unlink()
    manifest = json.loads((dest / "manifest.json").read_text())[0]
    layers: dict[str, Path] = {}
    for name in manifest["Layers"]:
        tarball = dest / name
        digest = hashlib.sha256()
        with tarball.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        layers[f"sha256:{digest.hexdigest()}"] = tarball
    return SavedImage(layers, dest / manifest["Config"])


def extract_layer(tarball: Path, dest: Path) -> Path:
    """The layer's filesystem, extracted (as the engine would, owners and all) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(dest)], check=True)
    return dest


def _regular_files(root: Path) -> Iterator[Path]:
    """Regular files only: a layer may hold device nodes (reading /dev/zero never ends)
    and absolute symlinks, which would point into the host."""
    for path in sorted(root.rglob("*")):
        if not path.is_symlink() and path.is_file():
            yield path


def scan_tree(root: Path, needles_file: Path) -> list[Finding]:
    """detect-secrets' private-key findings in every regular file under ``root``."""
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import get_filters, transient_settings

    plugins = [
        {"name": "PrivateKeyDetector"},
        {
            "name": "KeyBytesDetector",
            "path": f"file://{PLUGIN_FILE}",
            "needles_file": str(needles_file),
        },
    ]
    found: list[Finding] = []
    with transient_settings({"plugins_used": plugins}) as settings:
        settings.disable_filters(
            *[f for f in list(settings.filters) if not f.endswith(".is_invalid_file")]
        )
        get_filters.cache_clear()
        try:
            for path in _regular_files(root):
                found.extend(
                    Finding(str(path.relative_to(root)), secret.type)
                    for secret in scan_file(str(path))
                )
        finally:
            get_filters.cache_clear()
    return found


def write_needles(needles: list[bytes], path: Path) -> Path:
    """Write the needles file `KeyBytesDetector` reads."""
    path.write_bytes(b"\n".join(needles) + b"\n")
    return path
