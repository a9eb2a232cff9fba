"""``audit``: search a built image for private-key material.

Looks in every layer of ``docker save`` (file by file), the image config and
the build history for: PEM and OpenSSH private-key blocks, the configured
key's own bytes (40-character windows of its base64 body), and build args or
ENV named like secrets. Layers the image shares with its base image are
searched only for the configured key: base images legitimately ship test keys
(GnuTLS' self-tests, for one). On request the daemon's data root is searched
for the configured key too.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from .agent import private_workdir
from .engine import inspect_with_cli
from .errors import EngineError, SecurebuildError
from .settings import Settings

PRIVATE_KEY_BLOCK = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
#: Names of ARGs, ENVs and build args that look like secrets (a pattern, not a password).
SECRET_NAME = r"\w*(?:KEY|TOKEN|SECRET|PASSW(?:OR)?D|PASSPHRASE|CREDENTIAL|NETRC)\w*"  # noqa: S105
_SECRET_ASSIGNMENT = re.compile(rf"(?<![\w-])({SECRET_NAME})=", re.IGNORECASE)
_MAX_FILE = 64 << 20  # larger files are read in chunks
WINDOW = 40


class AuditError(SecurebuildError):
    """The audit found private-key material or secret-looking settings."""

    exit_code = 7


@dataclass(frozen=True)
class Finding:
    """One place something was found; never the secret itself."""

    where: str
    what: str

    def line(self) -> str:
        """One line for the report."""
        return f"{self.where}: {self.what}"


def key_needles(key_text: bytes) -> list[bytes]:
    """40-character windows of a PEM/OpenSSH key's base64 body (its first line,
    a header every key of a kind shares, is left out)."""
    lines = [
        line.strip()
        for line in key_text.splitlines()
        if line.strip() and not line.startswith(b"-----") and b":" not in line
    ]
    needles: set[bytes] = set()
    for line in lines[1:]:
        for piece in (line[:WINDOW], line[-WINDOW:]):
            if len(piece) == WINDOW:
                needles.add(piece)
    return sorted(needles)


def configured_needles(settings: Settings) -> list[bytes]:
    """Needles for the configured key, when its text can be read without a prompt."""
    texts: list[bytes] = []
    if settings.key_file:
        with contextlib.suppress(OSError):
            texts.append(Path(settings.key_file).expanduser().read_bytes())
    if settings.key_source in ("auto", "keyring"):
        try:
            from .keys import KeyringKeySource

            stored = KeyringKeySource(settings)._read(settings.keyring_key)
        except SecurebuildError:
            stored = None
        if stored:
            texts.append(stored.encode("utf-8"))
    return sorted({needle for text in texts for needle in key_needles(text)})


def _scan(data: bytes, needles: Iterable[bytes], headers: bool) -> list[str]:
    found = []
    if headers and PRIVATE_KEY_BLOCK.search(data):
        found.append("a private key block (-----BEGIN ... PRIVATE KEY-----)")
    if any(needle in data for needle in needles):
        found.append("bytes of the configured private key")
    return found


def _layers(saved: IO[bytes], image: str) -> Iterator[tuple[str, IO[bytes]]]:
    """Each layer tarball of a `docker save` archive (docker's and OCI's layouts)."""
    with tarfile.open(fileobj=saved) as archive:
        manifest_file = archive.extractfile("manifest.json")
        manifest = json.load(manifest_file) if manifest_file else []
        for entry in manifest:
            for layer in entry.get("Layers", []):
                try:
                    member = archive.extractfile(layer)
                except KeyError:
                    # Some engines list a layer they do not write (moby#49473).
                    raise EngineError(
                        f"docker save of {image} lists layer {layer} but does not hold it,"
                        " so the image cannot be searched whole",
                        hint="pull or build the image again, then audit it",
                    ) from None
                if member is not None:
                    yield layer, member


GZIP = b"\x1f\x8b"
ZSTD = b"\x28\xb5\x2f\xfd"


def _uncompressed(name: str, layer: IO[bytes]) -> Any:
    """A layer's tar stream. `docker save` writes layers as plain tars; with the
    containerd image store, as the registry blobs they were: gzip, or zstd."""
    buffered = io.BufferedReader(cast(Any, layer))  # peek() at the magic bytes
    magic = buffered.peek(4)[:4]
    if magic.startswith(GZIP):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if magic == ZSTD:
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python 3.14

            return zstd.ZstdFile(buffered)
        except ImportError:
            pass
        try:
            import zstandard
        except ImportError:
            raise EngineError(
                f"layer {name[:24]} is zstd-compressed, and this Python cannot read zstd",
                hint="install the zstandard package (pip install zstandard), then audit again",
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(buffered)
    return buffered


def _scan_layer(
    name: str, layer: IO[bytes], needles: list[bytes], headers: bool
) -> tuple[str, list[Finding]]:
    """Search a layer file by file; return its diff id (the sha256 of its
    uncompressed tar, as the image's RootFS lists it) and the findings."""
    digest = hashlib.sha256()
    findings: list[Finding] = []
    stream: IO[bytes] = _uncompressed(name, layer)

    class Hashing:
        """Hash the layer while tarfile reads it, to tell base layers apart."""

        def read(self, size: int = -1) -> bytes:
            chunk = stream.read(size)
            digest.update(chunk)
            return chunk

    try:
        with tarfile.open(fileobj=Hashing(), mode="r|") as files:  # type: ignore[call-overload]
            for member in files:
                if not member.isfile():
                    continue
                extracted = files.extractfile(member)
                if extracted is None:
                    continue
                tail = b""
                seen: set[str] = set()
                while chunk := extracted.read(_MAX_FILE):
                    for what in _scan(tail + chunk, needles, headers):
                        if what not in seen:
                            seen.add(what)
                            findings.append(Finding(f"layer {name[:24]}: /{member.name}", what))
                    tail = chunk[-64:]
        while stream.read(1 << 20):  # hash the tar's padding too
            pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise EngineError(
            f"layer {name[:24]} of the saved image cannot be read ({exc.__class__.__name__}),"
            " so the image cannot be searched whole",
            hint="save the image again (`docker save`), or report the engine and its version",
        ) from None
    return f"sha256:{digest.hexdigest()}", findings


def audit_image(
    docker: str, image: str, *, needles: list[bytes], base_image: str = ""
) -> list[Finding]:
    """Every finding in ``image``; layers shared with ``base_image`` get the key search only."""
    info = inspect_with_cli(docker, image)
    base_layers: set[str] = set()
    if base_image:
        try:
            base_layers = set(inspect_with_cli(docker, base_image)["RootFS"]["Layers"])
        except EngineError:
            base_layers = set()
    findings: list[Finding] = []
    # "Config": null is seen on some engines' inspect output.
    for variable in (info.get("Config") or {}).get("Env") or []:
        name = variable.split("=", 1)[0]
        if re.fullmatch(SECRET_NAME, name, re.IGNORECASE):
            findings.append(Finding("image config", f"ENV {name} is named like a secret"))
    config_text = json.dumps(info).encode()
    findings += [Finding("image config", what) for what in _scan(config_text, needles, True)]
    history = subprocess.run(
        [docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
    ).stdout
    for number, step in enumerate(reversed(history.splitlines()), start=1):
        where = f"history step {number}"
        for name in _SECRET_ASSIGNMENT.findall(step.decode(errors="replace")):
            findings.append(Finding(where, f"build arg {name} is named like a secret"))
        findings += [Finding(where, what) for what in _scan(step, needles, True)]

    with private_workdir() as workdir:
        saved_path = workdir / "image.tar"
        with saved_path.open("wb") as saved:
            os.chmod(saved_path, 0o600)
            done = subprocess.run(
                [docker, "save", image],
                stdout=saved,
                stderr=subprocess.PIPE,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        if done.returncode != 0:
            raise EngineError(f"docker save {image} failed", hint="check the daemon and the image")
        with saved_path.open("rb") as saved:
            for name, layer in _layers(saved, image):
                # A layer's diff id is the sha256 of its tar; found while scanning.
                digest, layer_findings = _scan_layer(name, layer, needles, headers=True)
                if digest in base_layers:
                    layer_findings = [
                        f for f in layer_findings if f.what == "bytes of the configured private key"
                    ]
                findings += layer_findings
    return findings


def audit_data_root(docker: str, needles: list[bytes]) -> list[Finding]:
    """Files under the daemon's data root holding the configured key's bytes."""
    root = subprocess.run(
        [docker, "info", "--format", "{{.DockerRootDir}}"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    ).stdout.strip()
    if not root or not os.access(root, os.R_OK):
        raise EngineError(
            f"cannot read the daemon's data root {root or '(unknown)'}",
            hint="run the audit as a user who can read it, or without --data-root",
        )
    if not needles:
        return []
    grep = shutil.which("grep")
    if grep:
        # GNU/BSD grep's multi-string matcher reads hundreds of MB a second.
        with private_workdir() as workdir:
            patterns = workdir / "needles"
            patterns.write_bytes(b"\n".join(needles) + b"\n")
            done = subprocess.run(
                [grep, "-r", "-l", "-a", "-F", "-f", str(patterns), "--no-messages", root],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        return [
            Finding(f"data root: {line}", "bytes of the configured private key")
            for line in done.stdout.splitlines()
            if line
        ]
    findings = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                with path.open("rb") as handle:
                    tail = b""
                    while chunk := handle.read(8 << 20):
                        if any(n in tail + chunk for n in needles):
                            findings.append(
                                Finding(f"data root: {path}", "bytes of the configured private key")
                            )
                            break
                        tail = chunk[-WINDOW:]
            except OSError:
                continue
    return findings


def run_audit(
    settings: Settings, image: str, *, data_root: bool = False, report: IO[str] | None = None
) -> list[Finding]:
    """Audit ``image`` (and the data root, on request), writing one line per finding to
    ``report``; raise `AuditError` when there is any."""
    from .engine import docker_client

    # Any docker client will do: an audit reads images, it builds nothing.
    docker = docker_client(settings.docker)
    needles = configured_needles(settings)
    findings = audit_image(docker, image, needles=needles, base_image=settings.base_image)
    if data_root:
        findings += audit_data_root(docker, needles)
    if report is not None:
        for finding in findings:
            report.write(f"FOUND {finding.line()}\n")
    if findings:
        raise AuditError(
            f"audit of {image} found {len(findings)} problem(s), listed above",
            hint="rebuild without the secret (build-image forwards keys instead of copying"
            " them), and rotate any key that was in the image",
        )
    return findings
