"""Looking for a private key's bytes where they must not be.

"Key bytes" are 40-character windows of the key's base64 body (as written on
disk, and as re-encoded for ssh-add), the raw private scalar of ed25519 keys
(in memory only), and PEM/OpenSSH private-key headers. Large places (the
daemon's data root, `docker save` streams) are searched with GNU grep's
multi-string matcher, which reads hundreds of MB a second.

This is deliberately not the product's own `securebuild_tasks.audit`: a
scanner that shares code with what it checks could share its blind spots.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.layers import GZIP, ZSTD, base_layer_count, layer_streams, open_member

HEADER = re.compile(rb"-----BEGIN (?:OPENSSH |RSA |EC |ENCRYPTED )?PRIVATE KEY-----")
WINDOW = 40


def _body_windows(pem: bytes) -> set[bytes]:
    lines = [
        line.strip()
        for line in pem.splitlines()
        if line.strip() and not line.startswith(b"-----") and b":" not in line
    ]
    # The first line of an OpenSSH key is a header shared by all keys of a kind;
    # it says nothing about this key, so it is not a needle. Two windows per line
    # catch the key in any wrapping (PEM lines, JSON strings, joined text).
    windows: set[bytes] = set()
    for line in lines[1:]:
        for piece in (line[:WINDOW], line[-WINDOW:]):
            if len(piece) == WINDOW:
                windows.add(piece)
    return windows


def _load(key_file: bytes, passphrase: str) -> Any:
    loader = (
        serialization.load_ssh_private_key
        if b"OPENSSH PRIVATE KEY" in key_file
        else serialization.load_pem_private_key
    )
    return loader(key_file, password=passphrase.encode() or None)


def key_needles(key_file: bytes, passphrase: str = "") -> list[bytes]:
    """Text needles whose presence means the key leaked (base64 windows)."""
    key = _load(key_file, passphrase)
    reencoded = key.private_bytes(  # the form the tool pipes to ssh-add
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    needles = _body_windows(key_file) | _body_windows(reencoded)
    return sorted(needles)


def pem_needles(pem: bytes) -> list[bytes]:
    """Needles for a certificate: its last two body lines, which hold the signature.

    The rest of a certificate's DER (names, extensions) is shared with many
    certificates, the system CA bundle's included; the signature is its own.
    """
    body = [
        line.strip() for line in pem.splitlines() if line.strip() and not line.startswith(b"-----")
    ]
    return [line for line in body[-2:] if len(line) >= 16]


def raw_needles(key_file: bytes, passphrase: str = "") -> list[bytes]:
    """Binary needles: the raw private scalar of an ed25519 key."""
    key = _load(key_file, passphrase)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return [key.private_bytes_raw()]
    return []


def find_in_bytes(data: bytes, needles: Iterable[bytes]) -> list[bytes]:
    """The needles present in ``data``."""
    return [n for n in needles if n in data]


def _grep(
    needles: list[bytes], args: list[str], chunks: Iterable[bytes] | None = None
) -> list[str]:
    """Search with GNU grep's multi-string matcher (Aho-Corasick-like, fast).

    With ``chunks``, grep reads them on its standard input.
    """
    with tempfile.NamedTemporaryFile("wb", suffix=".needles") as patterns:
        patterns.write(b"\n".join(needles) + b"\n")
        patterns.flush()
        # The pattern file may lie in the tree searched (the test's TMPDIR): skip it.
        skip = ["--exclude", Path(patterns.name).name] if "-r" in args else []
        command = ["grep", "-a", "-F", "-f", patterns.name, *skip, *args]
        if chunks is None:
            done = subprocess.run(command, capture_output=True, check=False)
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        else:
            returncode, stdout, stderr = _grep_chunks(command, chunks)
    found = [line for line in stdout.decode(errors="replace").splitlines() if line]
    if returncode in (0, 1):
        return found
    # A live daemon's data root changes while it is read (builds of others run on
    # the same engine): a file that vanished between listing and reading is gone,
    # not unsearched. Any other error still fails the search.
    errors = stderr.decode(errors="replace").splitlines()
    if "-r" in args and errors and all(e.endswith("No such file or directory") for e in errors):
        return found
    raise RuntimeError(f"grep failed: {stderr.decode(errors='replace')}")


def _grep_chunks(command: list[str], chunks: Iterable[bytes]) -> tuple[int, bytes, bytes]:
    # grep is run with -c or -l here: its output is a line, so it cannot fill a
    # pipe and block grep while it is being fed.
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as grep:
        feed = grep.stdin
        assert feed is not None
        try:
            for chunk in chunks:
                feed.write(chunk)
        except BrokenPipeError:
            pass  # grep stopped early: its exit code and stderr say why
        except BaseException:
            grep.kill()
            raise
        stdout, stderr = grep.communicate()
        return grep.returncode, stdout, stderr


def find_in_tree(root: Path, needles: list[bytes]) -> list[str]:
    """Files under ``root`` holding any text needle."""
    return _grep(needles, ["-r", "-l", str(root)])


def docker_output(docker: str, *args: str) -> bytes:
    """Output of a docker CLI command (fails the caller loudly on error)."""
    done = subprocess.run([docker, *args], capture_output=True, check=True)
    return done.stdout


def image_leaks(
    docker: str, image: str, needles: list[bytes], base_image: str = ""
) -> dict[str, list[str]]:
    """Where in an image (save stream, history, config) any needle shows up.

    The key's own bytes are searched everywhere, in every file of the save
    stream with its layers decompressed (the containerd image store saves them
    gzip'd, where a byte search sees nothing). Private-key headers are
    searched only in the layers the build added: base images legitimately ship
    test keys (GnuTLS' self-tests, for one).
    """
    found: dict[str, list[str]] = {}
    with tempfile.TemporaryFile() as saved:
        subprocess.run([docker, "save", image], stdout=saved, check=True)
        saved.seek(0)
        count = _grep(needles, ["-c"], chunks=_expanded(saved))
        if count and count != ["0"]:
            found["docker save"] = [f"{count[0]} matching lines"]
        saved.seek(0)
        with tarfile.open(fileobj=saved) as archive:
            skip = base_layer_count(docker, base_image)
            added = b"".join(layer.read() for layer in layer_streams(archive, skip))
    if HEADER.search(added):
        found.setdefault("docker save (added layers)", []).append("private key header")
    for where, args in {
        "docker history": ["history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        "docker image inspect": ["image", "inspect", image],
    }.items():
        data = docker_output(docker, *args)
        if hits_b := find_in_bytes(data, needles):
            found[where] = [h.decode() for h in hits_b]
        if HEADER.search(data):
            found.setdefault(where, []).append("private key header")
    return found


def _expanded(saved: IO[bytes]) -> Iterator[bytes]:
    """Every file of a `docker save` stream, decompressed, a newline after each."""
    with tarfile.open(fileobj=saved) as archive:
        for member in archive.getmembers():
            if member.isfile():
                stream = open_member(archive, member)
                while chunk := stream.read(1 << 20):
                    yield chunk
                yield b"\n"


def _base_layers(docker: str, base_image: str) -> set[str]:
    if not base_image:
        return set()
    info = json.loads(docker_output(docker, "image", "inspect", base_image))
    return set(info[0]["RootFS"]["Layers"])


def image_config(docker: str, image: str) -> bytes:
    """The image's config exactly as stored (from `docker save`), not as inspect shows it.

    Fields the engine does not parse, such as BuildKit's inline cache
    (``moby.buildkit.cache.v0``), appear only here.
    """
    with tempfile.TemporaryFile() as saved:
        subprocess.run([docker, "save", image], stdout=saved, check=True)
        saved.seek(0)
        with tarfile.open(fileobj=saved) as archive:
            manifest = archive.extractfile("manifest.json")
            assert manifest is not None
            config_name = json.loads(manifest.read())[0]["Config"]
            config = archive.extractfile(config_name)
            assert config is not None
            return config.read()


def cache_leaks(
    cache_dir: Path, needles: list[bytes], docker: str = "", base_image: str = ""
) -> dict[str, list[str]]:
    """Where in an exported BuildKit cache (``--cache-to type=local``) key bytes are.

    Every blob is searched as BuildKit wrote it and, for a compressed layer,
    decompressed: a key inside a gzip'd layer tarball is invisible to a plain
    byte search. A blob in a compression this cannot read fails the search
    rather than pass unread. Private-key headers are not looked for in the base
    image's own layers (see `image_leaks`).
    """
    import gzip

    base = _base_layers(docker, base_image) if docker else set()
    found: dict[str, list[str]] = {}
    files = sorted(p for p in cache_dir.rglob("*") if p.is_file())
    if not files:
        raise RuntimeError(f"no cache was exported to {cache_dir}")
    for path in files:
        data = path.read_bytes()
        if data.startswith(GZIP):
            data = gzip.decompress(data)
        elif data.startswith(ZSTD):
            raise RuntimeError(f"{path} is zstd-compressed; this search cannot read it")
        hits = [h.decode() for h in find_in_bytes(data, needles)]
        if HEADER.search(data) and f"sha256:{hashlib.sha256(data).hexdigest()}" not in base:
            hits.append("private key header")
        if hits:
            found[str(path.relative_to(cache_dir))] = hits
    return found
