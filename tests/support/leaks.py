"""Looking for a private key's bytes where they must not be.

"Key bytes" are 40-character windows of the key's base64 body (as written on
disk, and as re-encoded for ssh-add), the raw private scalar of ed25519 keys,
and PEM/OpenSSH private-key headers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

HEADER = re.compile(rb"-----BEGIN (?:OPENSSH |RSA |EC |ENCRYPTED )?PRIVATE KEY-----")
WINDOW = 40


def _body_windows(pem: bytes) -> set[bytes]:
    lines = [
        line.strip()
        for line in pem.splitlines()
        if line.strip() and not line.startswith(b"-----") and b":" not in line
    ]
    # The first line of an OpenSSH key is a header shared by all keys of a kind;
    # it says nothing about this key, so it is not a needle.
    windows: set[bytes] = set()
    for line in lines[1:]:
        for start in range(0, max(len(line) - WINDOW + 1, 1), WINDOW // 2):
            piece = line[start : start + WINDOW]
            if len(piece) == WINDOW:
                windows.add(piece)
    joined = b"".join(lines[1:])
    for start in range(0, len(joined) - WINDOW + 1, WINDOW):
        windows.add(joined[start : start + WINDOW])
    return windows


def key_needles(key_file: bytes, passphrase: str = "") -> list[bytes]:
    """Every byte string whose presence means the key leaked."""
    loader = (
        serialization.load_ssh_private_key
        if b"OPENSSH PRIVATE KEY" in key_file
        else serialization.load_pem_private_key
    )
    key = loader(key_file, password=passphrase.encode() or None)
    reencoded = key.private_bytes(  # the form the tool pipes to ssh-add
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    needles = _body_windows(key_file) | _body_windows(reencoded)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        needles.add(key.private_bytes_raw())
    return sorted(needles)


def find_in_bytes(data: bytes, needles: Iterable[bytes]) -> list[bytes]:
    """The needles present in ``data``."""
    return [n for n in needles if n in data]


def find_in_tree(root: Path, needles: list[bytes]) -> list[str]:
    """Files under ``root`` holding any needle (read in overlapping chunks)."""
    pattern = re.compile(b"|".join(re.escape(n) for n in needles))
    overlap = max(len(n) for n in needles)
    hits: list[str] = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            try:
                with path.open("rb") as f:
                    tail = b""
                    while chunk := f.read(8 << 20):
                        if pattern.search(tail + chunk):
                            hits.append(str(path))
                            break
                        tail = chunk[-overlap:]
            except OSError:
                continue
    return hits


def docker_output(docker: str, *args: str) -> bytes:
    """Output of a docker CLI command (fails the caller loudly on error)."""
    done = subprocess.run([docker, *args], capture_output=True, check=True)
    return done.stdout


def _added_layers(saved: bytes, base_layers: set[str]) -> bytes:
    """The layer tarballs of a ``docker save`` stream that the base image lacks."""
    added = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.endswith("layer.tar"):
                continue
            extracted = archive.extractfile(member)
            data = extracted.read() if extracted else b""
            if f"sha256:{hashlib.sha256(data).hexdigest()}" not in base_layers:
                added.append(data)
    return b"".join(added)


def image_leaks(
    docker: str, image: str, needles: list[bytes], base_image: str = ""
) -> dict[str, list[bytes]]:
    """Where in an image (save stream, history, config) any needle shows up.

    The key's own bytes are searched everywhere. Private-key headers are
    searched only in the layers the build added: base images legitimately ship
    test keys (GnuTLS' self-tests, for one).
    """
    saved = docker_output(docker, "save", image)
    base_layers: set[str] = set()
    if base_image:
        info = json.loads(docker_output(docker, "image", "inspect", base_image))
        base_layers = set(info[0]["RootFS"]["Layers"])
    places = {
        "docker save": saved,
        "docker history": docker_output(
            docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}", image
        ),
        "docker image inspect": docker_output(docker, "image", "inspect", image),
    }
    found = {where: find_in_bytes(data, needles) for where, data in places.items()}
    places["docker save"] = _added_layers(saved, base_layers)
    for where, data in places.items():
        if HEADER.search(data):
            found.setdefault(where, []).append(b"private key header")
    return {where: hits for where, hits in found.items() if hits}
