"""``audit``: search a built image for private-key material.

Looks in every layer of ``docker save`` (file by file, and inside the archives
and compressed files among them), the image config and each step of the build
history it records for: PEM and OpenSSH private-key blocks, the configured
key's own bytes (40-character windows of its base64 body), and build args or
ENV named like secrets. Layers the image shares with its base image are
searched only for the configured key: base images legitimately ship test keys
(GnuTLS' self-tests, for one). On request the daemon's data root is searched
for the configured key too.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from .agent import private_workdir
from .engine import inspect_with_cli
from .errors import EngineError, SecurebuildError
from .settings import Settings

# A key block: the header, then the start of a key's body: OpenSSH's
# "openssh-key-v1" in base64, a DER sequence ("M..."), or an encrypted PEM's
# Proc-Type line. Between the two only what writes a line break may stand: the
# break itself, escaped (a .env file, JSON, twice-escaped JSON), as XML or HTML
# writes it, or closing and reopening a string literal ("\n" + "..."). The
# header alone is no key: ssh, ssh-keygen and TLS libraries hold it as a string.
_LINE_BREAK = rb"(?:\s|\\{1,2}[rn]|\\|&#0*1[03];|&#[xX]0*[aAdD];|<br\s*/?>|[\"'+,])"
PRIVATE_KEY_BLOCK = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----" + _LINE_BREAK + rb"{0,40}"
    rb"(?:b3BlbnNzaC1rZXktdjE|M[A-Za-z0-9+/]{15}|Proc-Type:)"
)
# A PuTTY key file (.ppk, versions 1 to 3): its first line, naming the key's
# algorithm, then its Encryption line. The first line's name alone is a
# string constant of PuTTY and of libraries that read its files.
PUTTY_KEY_FILE = re.compile(
    rb"PuTTY-User-Key-File-[123]: [A-Za-z0-9@.+-]{1,64}" + _LINE_BREAK + rb"{1,40}Encryption: "
)
#: Names of ARGs, ENVs and build args that look like secrets (a pattern, not a password).
#: PAT only as a word of its own: GITHUB_PAT, not PATH.
_NAME_WORDS = r"KEY|TOKEN|SECRET|PASSW(?:OR)?D|PASSPHRASE|CREDENTIAL|NETRC|JWT|BEARER"
SECRET_NAME = rf"\w*(?:{_NAME_WORDS}|(?<![A-Z])PAT(?![A-Z]))\w*"
_SECRET_ASSIGNMENT = re.compile(rf"(?<![\w-])({SECRET_NAME})=", re.IGNORECASE)
WINDOW = 40


class AuditError(SecurebuildError):
    """The audit found private-key material or secret-looking settings."""

    exit_code = 7


@dataclass(frozen=True)
class Finding:
    """One place something was found; never the secret itself."""

    where: str
    what: str
    #: Something the audit could not search whole: reported, not a failure.
    note: bool = False

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


_KEY_BYTES = "bytes of the configured private key"


def _scan(data: bytes, needles: Iterable[bytes], headers: bool) -> list[str]:
    found = []
    if headers and PRIVATE_KEY_BLOCK.search(data):
        found.append("a private key block (-----BEGIN ... PRIVATE KEY-----)")
    if headers and PUTTY_KEY_FILE.search(data):
        found.append("a PuTTY private key (PuTTY-User-Key-File)")
    if any(needle in data for needle in needles):
        found.append(_KEY_BYTES)
    return found


def _strings(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON value, keys included (searched as decoded,
    whatever escaping the engine's JSON used)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _scan_json(value: Any, needles: list[bytes]) -> list[str]:
    found: list[str] = []
    for text in _strings(value):
        found += [what for what in _scan(text.encode(errors="replace"), needles, True)]
    return sorted(set(found))


@dataclass(frozen=True)
class _Saved:
    """What `docker save` wrote for one image: its config and its layers, with the
    diff id the config gives each."""

    config: dict[str, Any]
    layers: list[tuple[str, str]]  # (archive member, diff id)


def _read_saved(archive: tarfile.TarFile, image: str) -> _Saved:
    """The image's config and layer list from a `docker save` archive (docker's
    and OCI's layouts both carry a docker-style manifest.json)."""

    def unreadable(what: str) -> EngineError:
        return EngineError(
            f"docker save of {image}: {what}, so the image cannot be searched whole",
            hint="save the image again (`docker save`), or report the engine and its version",
        )

    def member_json(name: object, what: str) -> Any:
        try:
            member = archive.extractfile(name) if isinstance(name, str) else None
        except KeyError:
            member = None
        if member is None:
            raise unreadable(f"its {what} is missing")
        try:
            return json.load(member)
        except (ValueError, tarfile.TarError, OSError):
            raise unreadable(f"its {what} is not JSON") from None

    entries = member_json("manifest.json", "manifest.json")
    entry = entries[0] if isinstance(entries, list) and entries else None
    if not isinstance(entry, dict):
        raise unreadable("its manifest.json lists no image")
    config = member_json(entry.get("Config"), "image config")
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    layer_names = entry.get("Layers")
    if (
        not isinstance(config, dict)
        or not isinstance(diff_ids, list)
        or not isinstance(layer_names, list)
        or len(layer_names) != len(diff_ids)
    ):
        raise unreadable("its manifest and config do not list the same layers")
    return _Saved(config, list(zip(layer_names, diff_ids, strict=True)))


def _open_layer(archive: tarfile.TarFile, layer: str, image: str) -> IO[bytes]:
    try:
        member = archive.extractfile(layer)
    except KeyError:
        member = None
    if member is None:
        # Some engines list a layer they do not write (moby#49473).
        raise EngineError(
            f"docker save of {image} lists layer {layer} but does not hold it,"
            " so the image cannot be searched whole",
            hint="pull or build the image again, then audit it",
        )
    return member


GZIP = b"\x1f\x8b"
ZSTD = b"\x28\xb5\x2f\xfd"
BZIP2 = b"BZh"
XZ = b"\xfd7zXZ\x00"
ZIP = b"PK\x03\x04"


def _zstd_reader(source: Any, name: str) -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14

        return zstd.ZstdFile(source)
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise EngineError(
            f"layer {name[:24]} is zstd-compressed, and this Python cannot read zstd",
            hint="install the zstandard package (pip install zstandard), then audit again",
        ) from None
    return zstandard.ZstdDecompressor().stream_reader(source)


def _uncompressed(name: str, layer: IO[bytes]) -> Any:
    """A layer's tar stream. `docker save` writes layers as plain tars; with the
    containerd image store, as the registry blobs they were: gzip, or zstd."""
    buffered = io.BufferedReader(cast(Any, layer))  # peek() at the magic bytes
    magic = buffered.peek(4)[:4]
    if magic.startswith(GZIP):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if magic == ZSTD:
        return _zstd_reader(buffered, name)
    return buffered


# Archives and compressed files inside a layer are opened and searched too (a
# key in a wheel, a tarball or a .gz log is still in the image), down to
# _NESTED_DEPTH levels and _NESTED_BUDGET unpacked bytes per file of the layer.
# Archives are recognised by their first bytes, zip files also by name (a
# zipapp starts with a #! line). One that is damaged, encrypted or of an
# unknown kind is searched as the bytes it is. The archive formats' own
# readers do the unpacking: tarfile, zipfile, gzip, bz2, lzma, and zstd's.
_NESTED_DEPTH = 4
_NESTED_BUDGET = 1 << 30
_CHUNK = 8 << 20
_TAIL = 512  # longer than any needle or key-block match: matches across two reads
_ZIP_NAMES = (".zip", ".whl", ".egg", ".pyz", ".jar")


def _zstd_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    with contextlib.suppress(ImportError):
        import zstandard

        errors.append(zstandard.ZstdError)
    with contextlib.suppress(ImportError):
        from compression import zstd

        errors.append(zstd.ZstdError)
    return tuple(errors)


# What a damaged or unsupported archive raises while it is read.
_DAMAGED = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,  # a zip compression method zipfile lacks
    RuntimeError,  # an encrypted zip entry
)


class _Unreadable(Exception):
    """A read failed at nesting ``depth``: the archive at that depth, or above it,
    is what is damaged."""

    def __init__(self, depth: int) -> None:
        super().__init__(depth)
        self.depth = depth


class _TooBig(Exception):
    """A file's archives unpack to more than the budget."""


class _Search:
    """The search of one file of a layer, archives within included."""

    def __init__(self, needles: list[bytes], headers: bool, nested: bool, workdir: Path) -> None:
        self.needles = needles
        self.headers = headers
        self.nested = nested
        self.workdir = workdir
        self.unpacked = 0
        self.too_big = False
        self.damaged: tuple[type[BaseException], ...] = (*_DAMAGED, *_zstd_errors())

    def file(self, source: IO[bytes], where: str, depth: int = 0) -> list[Finding]:
        """Search one file's bytes, then, when it is an archive, what it holds."""
        reader = _Reader(self, source, depth)
        head = reader.read_exactly(512)
        inner: list[Finding] = []
        kind = self._kind(head, where) if self.nested and depth < _NESTED_DEPTH else ""
        if kind:
            body = _Prefixed(head, reader)
            try:
                # What is found before an archive turns out damaged is kept.
                self._unpack(kind, body, where, depth, inner)
            except _Unreadable as exc:
                if self._fatal(exc, depth):
                    raise
            except self.damaged:
                pass
            except _TooBig:
                self.too_big = True  # what was found so far stays found
        try:
            while reader.read(_CHUNK):  # the rest of its own bytes
                pass
        except _TooBig:
            self.too_big = True
        except _Unreadable as exc:
            if self._fatal(exc, depth):
                raise
        said = {finding.what for finding in inner}
        return [Finding(where, what) for what in reader.found if what not in said] + inner

    @staticmethod
    def _fatal(exc: _Unreadable, depth: int) -> bool:
        """Whether a failed read ends the search of the layer: a read of the layer
        itself (depth 0), or of an archive above this one. A file unpacked from
        an archive (depth 1 and deeper) that breaks off is a damaged archive:
        what was found in it so far is kept, and the search goes on."""
        return exc.depth < depth or exc.depth == 0

    @staticmethod
    def _kind(head: bytes, where: str) -> str:
        if head.startswith(GZIP):
            return "gzip"
        if head.startswith(ZSTD):
            return "zstd"
        if head.startswith(BZIP2):
            return "bzip2"
        if head.startswith(XZ):
            return "xz"
        if head.startswith(ZIP) or where.lower().endswith(_ZIP_NAMES):
            return "zip"
        if head[257:262] == b"ustar":
            return "tar"
        return ""

    def _unpack(self, kind: str, body: Any, where: str, depth: int, found: list[Finding]) -> None:
        if kind == "tar":
            with tarfile.open(fileobj=body, mode="r|") as files:
                for member in files:
                    # Reading past a member, searched or not, reads its claimed
                    # size: a header claiming exabytes would take forever.
                    skipped = member.isreg() or member.type not in tarfile.SUPPORTED_TYPES
                    if skipped and member.size > _NESTED_BUDGET - self.unpacked:
                        raise _TooBig
                    extracted = files.extractfile(member) if member.isfile() else None
                    if extracted is not None:
                        found += self.file(extracted, f"{where} > {member.name}", depth + 1)
            return
        if kind == "zip":
            # zipfile needs to seek: the archive is copied to a spooled file
            # in the audit's private work folder first.
            with tempfile.SpooledTemporaryFile(_CHUNK, mode="w+b", dir=str(self.workdir)) as spool:
                while chunk := body.read(_CHUNK):
                    spool.write(chunk)
                spool.seek(0)
                with zipfile.ZipFile(cast(IO[bytes], spool)) as archive:
                    for info in archive.infolist():
                        if info.is_dir():
                            continue
                        try:
                            with archive.open(info) as entry:
                                # zipfile checks an entry's CRC in the read that
                                # returns its last bytes, and raises instead of
                                # returning them: a bad CRC would hide them.
                                with contextlib.suppress(AttributeError):
                                    entry._expected_crc = None  # type: ignore[attr-defined]
                                found += self.file(entry, f"{where} > {info.filename}", depth + 1)
                        except _Unreadable as exc:
                            if exc.depth <= depth:
                                raise
                        except self.damaged:
                            continue  # a damaged or encrypted entry: the next one
            return
        # Closing the reader leaves ``body`` open.
        with contextlib.closing(_decompressing(kind, body, where)) as opened:
            found += self.file(opened, f"{where} > ({kind})", depth + 1)


def _decompressing(kind: str, body: Any, where: str) -> Any:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=body, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(body)
    if kind == "xz":
        return lzma.LZMAFile(body)
    return _zstd_reader(body, where)


class _Reader:
    """Reads one file of the search, searching every chunk that passes (with the
    tail of the chunk before); counts what archives unpack against the budget."""

    def __init__(self, search: _Search, source: IO[bytes], depth: int) -> None:
        self.search = search
        self.source = source
        self.depth = depth
        self.found: list[str] = []
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        # read1: what is there now. A decompressor's read(n) that meets a
        # truncated end raises, and drops what it had unpacked before it.
        read = getattr(self.source, "read1", None) or self.source.read
        try:
            chunk = read(size if size >= 0 else _CHUNK)
        except (_Unreadable, _TooBig):
            raise
        except Exception as exc:
            raise _Unreadable(self.depth) from exc
        if chunk:
            if self.depth:
                self.search.unpacked += len(chunk)
                if self.search.unpacked > _NESTED_BUDGET:
                    raise _TooBig
            window = self.tail + chunk
            for what in _scan(window, self.search.needles, self.search.headers):
                if what not in self.found:
                    self.found.append(what)
            self.tail = window[-_TAIL:]
        return chunk

    def read_exactly(self, size: int) -> bytes:
        head = b""
        while len(head) < size and (chunk := self.read(size - len(head))):
            head += chunk
        return head


class _Prefixed:
    """A stream that starts with bytes already read from it."""

    def __init__(self, head: bytes, rest: _Reader) -> None:
        self.head = head
        self.rest = rest

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size < 0 or size >= len(self.head):
                out, self.head = self.head, b""
                return out + (self.rest.read(size - len(out)) if size > len(out) else b"")
            out, self.head = self.head[:size], self.head[size:]
            return out
        return self.rest.read(size)


def _scan_layer(
    name: str, layer: IO[bytes], search: Callable[[], _Search]
) -> tuple[str, list[Finding]]:
    """Search a layer file by file; return its diff id (the sha256 of its
    uncompressed tar, as the image's config lists it) and the findings.
    ``search`` makes a `_Search` per file of the layer."""
    digest = hashlib.sha256()
    findings: list[Finding] = []
    stream: IO[bytes] = _uncompressed(name, layer)

    class Hashing:
        """Hash the layer while tarfile reads it."""

        def read(self, size: int = -1) -> bytes:
            chunk = stream.read(size)
            digest.update(chunk)
            return chunk

    try:
        with tarfile.open(fileobj=Hashing(), mode="r|") as files:  # type: ignore[call-overload]
            for member in files:
                extracted = files.extractfile(member) if member.isfile() else None
                if extracted is None:
                    continue
                where = f"layer {name[:24]}: /{member.name}"
                searching = search()
                findings += searching.file(extracted, where)
                if searching.too_big:
                    what = (
                        f"searched up to {_NESTED_BUDGET >> 20} MiB of what its archives"
                        " unpack to, not whole"
                    )
                    findings.append(Finding(where, what, note=True))
        while stream.read(1 << 20):  # hash the tar's padding too
            pass
    except _Unreadable as exc:
        raise _layer_unreadable(name, exc.__cause__ or exc) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _layer_unreadable(name, exc) from None
    return f"sha256:{digest.hexdigest()}", findings


def _layer_unreadable(name: str, exc: BaseException) -> EngineError:
    return EngineError(
        f"layer {name[:24]} of the saved image cannot be read ({exc.__class__.__name__}),"
        " so the image cannot be searched whole",
        hint="save the image again (`docker save`), or report the engine and its version",
    )


def _history(config: dict[str, Any], needles: list[bytes]) -> list[Finding]:
    """The build history as the image's config records it: each step's command
    (the build args a RUN saw are written into it) and comment."""
    findings: list[Finding] = []
    steps = config.get("history") or []
    for number, step in enumerate(steps if isinstance(steps, list) else [], start=1):
        where = f"history step {number}"
        created_by = str(step.get("created_by") or "") if isinstance(step, dict) else ""
        for name in _SECRET_ASSIGNMENT.findall(created_by):
            findings.append(Finding(where, f"build arg {name} is named like a secret"))
        findings += [Finding(where, what) for what in _scan_json(step, needles)]
    return findings


def audit_image(
    docker: str, image: str, *, needles: list[bytes], base_image: str = ""
) -> list[Finding]:
    """Every finding in ``image``; layers shared with ``base_image`` get the key search only."""
    inspect_with_cli(docker, image)  # one clear line when there is no such image
    base_layers: set[str] = set()
    if base_image:
        try:
            base_layers = set(inspect_with_cli(docker, base_image)["RootFS"]["Layers"])
        except (EngineError, KeyError, TypeError):
            base_layers = set()
    findings: list[Finding] = []
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
        with tarfile.open(saved_path) as archive:
            saved_image = _read_saved(archive, image)
            config = saved_image.config
            # "config": null is seen on some engines' images.
            settings = config.get("config") or {}
            for variable in settings.get("Env") or [] if isinstance(settings, dict) else []:
                name = str(variable).split("=", 1)[0]
                if re.fullmatch(SECRET_NAME, name, re.IGNORECASE):
                    findings.append(Finding("image config", f"ENV {name} is named like a secret"))
            outside_history = {key: value for key, value in config.items() if key != "history"}
            findings += [
                Finding("image config", what) for what in _scan_json(outside_history, needles)
            ]
            findings += _history(config, needles)
            for layer, diff_id in saved_image.layers:
                # A base image's layers may ship test keys (and are not the
                # build's): they are searched for the configured key alone.
                base = diff_id in base_layers

                def search(base: bool = base) -> _Search:
                    return _Search(
                        needles, headers=not base, nested=not base or bool(needles), workdir=workdir
                    )

                digest, layer_findings = _scan_layer(
                    layer, _open_layer(archive, layer, image), search
                )
                if base:  # a base image's files are not the build's: its key alone counts
                    layer_findings = [f for f in layer_findings if f.what == _KEY_BYTES]
                if digest != diff_id:
                    raise EngineError(
                        f"layer {layer[:24]} of the saved image is not the layer its config"
                        f" names ({diff_id[:19]}), so the image cannot be searched whole",
                        hint="save the image again (`docker save`), or report the engine"
                        " and its version",
                    )
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
    if grep and os.path.exists("/dev/stdin"):
        # GNU/BSD grep's multi-string matcher reads hundreds of MB a second. The
        # needles are pieces of the key: grep reads them from a pipe, never a
        # file, so no signal or crash can leave them on disk.
        done = subprocess.run(
            [grep, "-r", "-l", "-a", "-F", "-f", "/dev/stdin", "--no-messages", root],
            input=b"\n".join(needles) + b"\n",
            capture_output=True,
            check=False,
        )
        return [
            Finding(f"data root: {os.fsdecode(line)}", _KEY_BYTES)
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
                            findings.append(Finding(f"data root: {path}", _KEY_BYTES))
                            break
                        tail = chunk[-WINDOW:]
            except OSError:
                continue
    return findings


def run_audit(
    settings: Settings,
    image: str,
    *,
    cwd: Path,
    data_root: bool = False,
    report: IO[str] | None = None,
) -> list[Finding]:
    """Audit ``image`` (and the data root, on request), writing one line per finding to
    ``report``; raise `AuditError` when there is any. The base image is the one
    the project in ``cwd`` builds on."""
    from .build import base_image, resolve_context
    from .engine import docker_client
    from .index import adopt_env_token

    adopt_env_token()  # the docker queries below inherit this process's environment

    try:
        base = base_image(settings, cwd, resolve_context(settings, cwd))
    except SecurebuildError:  # no project here: an image audited on its own
        base = settings.base_image

    # Any docker client will do: an audit reads images, it builds nothing.
    docker = docker_client(settings.docker)
    needles = configured_needles(settings)
    findings = audit_image(docker, image, needles=needles, base_image=base)
    if data_root:
        findings += audit_data_root(docker, needles)
    if report is not None:
        for finding in findings:
            report.write(f"{'NOTE' if finding.note else 'FOUND'} {finding.line()}\n")
    problems = [finding for finding in findings if not finding.note]
    if problems:
        raise AuditError(
            f"audit of {image} found {len(problems)} problem(s), listed above",
            hint="rebuild without the secret (build-image forwards keys instead of copying"
            " them), and rotate any key that was in the image",
        )
    return findings
