"""audit reads every layer as the engines save them, and fails in one line when it cannot.

A stand-in docker client serves an image's inspect output and `docker save`
archive, made here: plain, gzip and zstd layers (the containerd image store
saves registry blobs as they are), a base layer that ships a test key as base
images do, keys hidden in archives inside a layer, a history that holds a
secret, and the broken archives some engines write.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from securebuild_tasks import audit
from securebuild_tasks.audit import audit_image, key_needles, run_audit
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


def _escaped_json(value: Any) -> str:
    """JSON with every character of every string written as a \\u escape."""
    if isinstance(value, str):
        return '"' + "".join(f"\\u{ord(c):04x}" for c in value) + '"'
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{_escaped_json(k)}:{_escaped_json(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_escaped_json(item) for item in value) + "]"
    return json.dumps(value)


PLAIN_CONFIG = {"Env": ["PATH=/usr/bin"]}


def _image(
    folder: Path,
    layers: list[dict[str, bytes]],
    *,
    base: int,
    compress: str = "",
    config: Any = PLAIN_CONFIG,
    history: list[dict[str, Any]] | None = None,
    drop_blob: bool = False,
    diff_ids: list[str] | None = None,
    escape: bool = False,
) -> str:
    """Write the stand-in's files for image ``app`` (its first ``base`` layers are
    base image ``base``'s); return the docker executable."""
    folder.mkdir(parents=True, exist_ok=True)
    made_ids, blobs = [], {}
    for files in layers:
        raw = _tar(files)
        made_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        blob = _compress(raw, compress)
        blobs["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    diff_ids = made_ids if diff_ids is None else diff_ids
    image_config = {
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history or [{"created_by": '/bin/sh -c #(nop) CMD ["python"]'}],
    }
    config_blob = (_escaped_json(image_config) if escape else json.dumps(image_config)).encode()
    config_name = "blobs/sha256/" + hashlib.sha256(config_blob).hexdigest()
    (folder / "inspect-app.json").write_text(json.dumps([{"RootFS": {"Layers": diff_ids}}]))
    (folder / "inspect-base.json").write_text(json.dumps([{"RootFS": {"Layers": diff_ids[:base]}}]))
    manifest = [{"Config": config_name, "Layers": list(blobs)}]
    if drop_blob:
        blobs.popitem()
    files = [("manifest.json", json.dumps(manifest).encode()), (config_name, config_blob)]
    with tarfile.open(folder / "save.tar", "w") as archive:
        for name, data in [*files, *blobs.items()]:
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
    """Some engines write "config": null: the layers are still searched."""
    docker = _image(images, [{"root/.ssh/id_rsa": pem}], base=0, config=None)
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
            if member.name.startswith("blobs/") and data.startswith(gzip.compress(b"")[:2]):
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
    assert run_audit(settings, "app", cwd=images) == []


def _zip(files: dict[str, bytes], prefix: bytes = b"") -> bytes:
    out = io.BytesIO()
    out.write(prefix)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _places(found: list[Any]) -> list[tuple[str, str]]:
    return [(f.where.split(": ", 1)[1], f.what.split(" (")[0]) for f in found]


def test_keys_inside_archives_in_a_layer_are_found(images: Path, pem: bytes) -> None:
    """A key in a wheel, in a tarball, in compressed files and in a zipapp (a zip
    behind a #! line) is still in the image: each is found, named by its path
    inside the archive; the same archives without a key are clean."""
    inner_tar = _tar({"pkg/id_ed25519": pem, "pkg/ok.txt": b"fine"})
    layer = {
        "opt/wheels/private-1.0-py3-none-any.whl": _zip({"private/key.pem": pem}),
        "opt/src.tar.gz": gzip.compress(inner_tar),
        "var/log/build.log.xz": lzma.compress(b"log\n" + pem),
        "var/log/old.log.bz2": bz2.compress(pem),
        "usr/local/bin/tool.pyz": _zip({"__main__.py": pem}, prefix=b"#!/usr/bin/python3\n"),
        # four archives deep: a zip in a tar in a gzip in a tar
        "opt/deep.tar": _tar({"a.tar.gz": gzip.compress(_tar({"b.zip": _zip({"c": pem})}))}),
    }
    docker = _image(images, [layer], base=0)
    found = _places(audit_image(docker, "app", needles=[], base_image=""))
    assert sorted(found) == sorted(
        (where, "a private key block")
        for where in [
            "/opt/wheels/private-1.0-py3-none-any.whl > private/key.pem",
            "/opt/src.tar.gz > (gzip) > pkg/id_ed25519",
            "/var/log/build.log.xz > (xz)",
            "/var/log/old.log.bz2 > (bzip2)",
            "/usr/local/bin/tool.pyz > __main__.py",
            "/opt/deep.tar > a.tar.gz > (gzip) > b.zip > c",
        ]
    )
    clean = {
        "opt/wheels/private-1.0-py3-none-any.whl": _zip({"private/ok.py": b"x = 1\n"}),
        "opt/src.tar.gz": gzip.compress(_tar({"pkg/ok.txt": b"fine"})),
        "var/log/build.log.xz": lzma.compress(b"log\n"),
    }
    docker = _image(images, [clean], base=0)
    assert audit_image(docker, "app", needles=[], base_image="") == []


def test_the_configured_key_is_found_inside_base_layer_archives(images: Path, pem: bytes) -> None:
    """A base layer's archives are searched for the configured key (its bytes, not
    any key block: base images ship test keys, archived ones too)."""
    needles = key_needles(pem)
    layers = [{"usr/share/doc/tests.tar.gz": gzip.compress(_tar({"test.key": pem}))}]
    docker = _image(images, layers, base=1)
    assert audit_image(docker, "app", needles=[], base_image="base") == []
    found = _places(audit_image(docker, "app", needles=needles, base_image="base"))
    assert found == [
        ("/usr/share/doc/tests.tar.gz > (gzip) > test.key", "bytes of the configured private key")
    ]


def test_a_damaged_archive_is_searched_as_its_bytes(images: Path, pem: bytes) -> None:
    """A file that starts like a gzip or zip but is not one is no error: its own
    bytes are searched, and the rest of the layer after it too."""
    layer = {
        "a.gz": gzip.compress(b"x" * 1000)[:20] + b"\n" + pem,
        "b.zip": b"PK\x03\x04 not really a zip\n" + pem,
        "c.key": pem,
    }
    docker = _image(images, [layer], base=0)
    found = _places(audit_image(docker, "app", needles=[], base_image=""))
    assert sorted(found) == [(f"/{name}", "a private key block") for name in sorted(layer)]


def test_a_key_split_across_reads_is_found(
    images: Path, pem: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files and archives are read in chunks: a key that straddles two is found."""
    monkeypatch.setattr(audit, "_CHUNK", 7)
    needles = key_needles(pem)
    docker = _image(images, [{"logs.gz": gzip.compress(b"." * 1005 + pem)}], base=0)
    found = _places(audit_image(docker, "app", needles=needles, base_image=""))
    assert found == [
        ("/logs.gz > (gzip)", "a private key block"),
        ("/logs.gz > (gzip)", "bytes of the configured private key"),
    ]


def test_an_archive_too_large_to_unpack_is_a_note(
    images: Path, pem: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Archives that unpack to more than the budget (a zip bomb, a model file) are
    searched up to it: a key found before is a finding, the rest is a note that
    does not fail the audit; a base layer's is neither; the layer's other files
    are still searched."""
    monkeypatch.setattr(audit, "_NESTED_BUDGET", 1 << 20)
    big = gzip.compress(b"\0" * (2 << 20))
    layer = {"bomb.gz": big, "keyed.gz": gzip.compress(pem + b"\0" * (2 << 20)), "k": pem}
    docker = _image(images, [layer], base=0)
    found = audit_image(docker, "app", needles=[], base_image="")
    assert sorted((f.where.split(": ", 1)[1], f.what.split(" (")[0], f.note) for f in found) == [
        ("/bomb.gz", "searched up to 1 MiB of what its archives unpack to, not whole", True),
        ("/k", "a private key block", False),
        ("/keyed.gz", "searched up to 1 MiB of what its archives unpack to, not whole", True),
        ("/keyed.gz > (gzip)", "a private key block", False),
    ]
    docker = _image(images, [{"bomb.gz": big}], base=0)
    report = io.StringIO()
    assert run_audit(Settings(docker=docker, key_source="file"), "app", cwd=images, report=report)
    assert report.getvalue().startswith("NOTE layer ")
    docker = _image(images, [{"bomb.gz": big}], base=1)
    assert audit_image(docker, "app", needles=key_needles(pem), base_image="base") == []


def test_a_tar_member_claiming_exabytes_ends_the_archive_not_the_audit(
    images: Path, pem: bytes
) -> None:
    """A nested tar whose member claims an absurd size (base-256) is damaged: its
    reading stops at the end of the file, and the audit goes on to the next."""
    first = tarfile.TarInfo("first.key")
    first.size = len(pem)
    member = first.tobuf(format=tarfile.GNU_FORMAT) + pem + b"\0" * (-len(pem) % 512)
    huge = bytearray(tarfile.TarInfo("huge").tobuf(format=tarfile.GNU_FORMAT))
    huge[156:157] = b"Z"  # a type tarfile does not know: it skips the member's size
    huge[124:136] = b"\x80" + (2**80).to_bytes(11, "big")  # base-256: 2**80 bytes
    huge[148:156] = b" " * 8
    huge[148:156] = b"%06o\0 " % sum(huge)  # the header's checksum
    hostile = member + bytes(huge) + b"\0" * 1024
    layer = {"hostile.tar": hostile, "after.key": pem}
    docker = _image(images, [layer], base=0)
    found = _places(audit_image(docker, "app", needles=[], base_image=""))
    assert sorted(found) == [
        ("/after.key", "a private key block"),
        ("/hostile.tar", "searched up to 1024 MiB of what its archives unpack to, not whole"),
        ("/hostile.tar > first.key", "a private key block"),
    ]


def test_what_is_found_before_an_archive_breaks_stays_found(images: Path, pem: bytes) -> None:
    """A truncated tarball: the key in its first member is a finding though the
    archive ends early."""
    noise = random.Random(0).randbytes(100_000)  # incompressible: the cut falls in it
    whole = gzip.compress(_tar({"a.key": pem, "b.bin": noise}))
    docker = _image(images, [{"cut.tar.gz": whole[: len(whole) // 2]}], base=0)
    found = _places(audit_image(docker, "app", needles=[], base_image=""))
    assert found == [("/cut.tar.gz > (gzip) > a.key", "a private key block")]


def test_the_history_is_read_from_the_image_config(images: Path, pem: bytes) -> None:
    """Each history step's command and comment are searched, as the image's own
    config records them: a secret build arg, a key block, the key's bytes."""
    needles = key_needles(pem)
    history = [
        {"created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
        {"created_by": "|1 SSH_PRIVATE_KEY=x /bin/sh -c make", "comment": "buildkit.dockerfile.v0"},
        {"created_by": "/bin/sh -c true", "comment": pem.decode()},
        {"created_by": "RUN " + needles[0].decode(), "empty_layer": True},
    ]
    docker = _image(images, [{"app/main.py": b"1"}], base=0, history=history)
    found = [(f.where, f.what.split(" (")[0]) for f in audit_image(docker, "app", needles=needles)]
    assert found == [
        ("history step 2", "build arg SSH_PRIVATE_KEY is named like a secret"),
        ("history step 3", "a private key block"),
        ("history step 3", "bytes of the configured private key"),
        ("history step 4", "bytes of the configured private key"),
    ]


def test_secrets_in_the_config_are_found_however_escaped(images: Path, pem: bytes) -> None:
    """The config is searched as decoded JSON: escapes (\\u002d for "-", say; here
    every character is one) hide neither a key block nor the key's bytes. ENV
    names like secrets are findings too."""
    needles = key_needles(pem)
    config = {"Env": ["PATH=/usr/bin", "DEPLOY_TOKEN=abc"], "Labels": {"k": pem.decode()}}
    docker = _image(images, [{"a": b"1"}], base=0, config=config, escape=True)
    assert not any(needle in (images / "save.tar").read_bytes() for needle in needles)
    found = [(f.where, f.what.split(" (")[0]) for f in audit_image(docker, "app", needles=needles)]
    assert found == [
        ("image config", "ENV DEPLOY_TOKEN is named like a secret"),
        ("image config", "a private key block"),
        ("image config", "bytes of the configured private key"),
    ]


def test_a_layer_that_is_not_the_one_its_config_names_is_one_error(images: Path) -> None:
    """The layers are checked against the config's diff ids: an archive whose
    layer was swapped cannot pass as the image searched."""
    docker = _image(images, [{"a": b"1"}], base=0, diff_ids=["sha256:" + "0" * 64])
    with pytest.raises(EngineError, match="is not the layer its config names"):
        audit_image(docker, "app", needles=[], base_image="")


def _encrypted_pem() -> str:
    """A traditional PEM key encrypted with a passphrase (Proc-Type), made here."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"passw0rd"),
        )
        .decode()
    )


def test_a_key_block_is_a_header_with_a_body(images: Path, pem: bytes) -> None:
    """A key block is found however its line breaks were written (as they are,
    CRLF, escaped in a .env file or twice in JSON, turned to spaces by an unquoted
    echo, as XML or HTML, or between string literals in code) and when encrypted;
    the header alone, a string constant of ssh and TLS libraries, is not one: an
    image that installs an ssh client is no finding."""
    lines = pem.decode().splitlines()
    encrypted = _encrypted_pem()
    keys = {
        "crlf.key": "\r\n".join(lines).encode(),
        "app/.env": ('SSH_KEY="' + "\\n".join(lines) + '"\n').encode(),
        "one-line.txt": " ".join(lines).encode(),
        "legacy.pem": encrypted.encode(),
        "settings_test.py": ('KEY = (\n    "' + '\\n"\n    "'.join(lines) + '\\n"\n)\n').encode(),
        "key.js": ('const k = "' + '\\n" +\n  "'.join(lines) + '";\n').encode(),
        "app.properties": ("key=" + "\\n\\\n    ".join(lines) + "\n").encode(),
        "twice.json": ('{"k": "' + "\\\\n".join(lines) + '"}').encode(),
        "key.xml": ("<k>" + "&#10;".join(lines) + "</k>").encode(),
        "key.html": ("<p>" + "<br>".join(lines) + "</p>").encode(),
    }
    constants = {
        "usr/bin/ssh-keygen": b"\x7fELF\0" + lines[0].encode() + b"\n\0" + lines[-1].encode(),
        "usr/lib/libssh.so": b"\0" + lines[0].encode() + b"\0%s\0",
    }
    docker = _image(images, [{**keys, **constants}], base=0)
    found = _places(audit_image(docker, "app", needles=[], base_image=""))
    assert sorted(found) == [(f"/{name}", "a private key block") for name in sorted(keys)]


def _ppk(encryption: str = "none", newline: str = "\n") -> bytes:
    """A PuTTY key file's layout (format 3), its key material random bytes made here."""
    import base64
    import os

    def lines(size: int) -> list[str]:
        body = base64.b64encode(os.urandom(size)).decode()
        return [body[i : i + 64] for i in range(0, len(body), 64)]

    public, private = lines(51), lines(48)
    return newline.join(
        [
            "PuTTY-User-Key-File-3: ssh-ed25519",
            f"Encryption: {encryption}",
            "Comment: deploy@ci",
            f"Public-Lines: {len(public)}",
            *public,
            *(["Key-Derivation: Argon2id", "Argon2-Memory: 8192"] if encryption != "none" else []),
            f"Private-Lines: {len(private)}",
            *private,
            f"Private-MAC: {os.urandom(32).hex()}",
            "",
        ]
    ).encode()


def test_a_putty_key_file_is_found(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PuTTY key file (.ppk) is a private key too, plain or encrypted, with LF or
    CRLF line ends, and split across two reads; PuTTY's own strings that name the
    format are not one."""
    monkeypatch.setattr(audit, "_CHUNK", 11)
    keys = {
        "home/app/.ssh/deploy.ppk": _ppk(),
        "deploy-crlf.ppk": _ppk(newline="\r\n"),
        "opt/encrypted.ppk": _ppk("aes256-cbc"),
        "app/.env": b'PPK="' + _ppk().replace(b"\n", b"\\n") + b'"\n',
        "old.ppk": _ppk().replace(b"File-3", b"File-1"),
        "key.xml": b"<k>" + _ppk().replace(b"\n", b"&#0000010;") + b"</k>",
    }
    constants = {
        "usr/bin/puttygen": b"\x7fELF\0PuTTY-User-Key-File-%u: %s\n\0Encryption: %s\n\0",
        "usr/lib/python3/paramiko/pkey.py": b'if lines[0].startswith("PuTTY-User-Key-File-3"):\n',
        "usr/share/doc/putty/ppk.txt": b"A file starts PuTTY-User-Key-File-3: and the type.\n",
    }
    docker = _image(images, [{**keys, **constants}], base=0)
    found = _places(audit_image(docker, "app", needles=[], base_image=""))
    assert sorted(found) == [(f"/{name}", "a PuTTY private key") for name in sorted(keys)]


def test_a_key_block_with_its_longest_line_break_is_found_across_reads(
    images: Path, pem: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tail kept between two reads holds a whole key-block match, however many
    escaped line breaks stand between its header and its body."""
    monkeypatch.setattr(audit, "_CHUNK", 5)
    lines = pem.decode().splitlines()
    longest = "." * 1000 + lines[0] + "&#x0A;" * 40 + "\n".join(lines[1:])
    docker = _image(images, [{"page.xml": longest.encode()}], base=0)
    found = _places(audit_image(docker, "app", needles=[], base_image=""))
    assert found == [("/page.xml", "a private key block")]


def test_the_data_root_search_leaves_no_piece_of_the_key_on_disk(
    tmp_path: Path, pem: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key's pieces reach grep through a pipe: while grep searches (minutes on a
    large data root, where a signal may end the audit) the temporary folder holds
    nothing, and grep still finds the file that holds the key."""
    root = tmp_path / "data-root"
    (root / "overlay2" / "abc").mkdir(parents=True)
    (root / "overlay2" / "abc" / "leaked").write_bytes(b"junk\n" + pem)
    (root / "overlay2" / "abc" / "clean").write_bytes(b"nothing here\n")
    docker = stand_in_docker(tmp_path / "docker", f"#!/bin/sh\necho {root}\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    seen = tmp_path / "seen-by-grep"
    real_grep = shutil.which("grep")
    assert real_grep is not None
    stand_in_docker(  # a grep that records what the temporary folder holds
        tmp_path / "grep",
        f'#!/bin/sh\nfind "{temp}" -type f -exec cat {{}} + > "{seen}"\nexec {real_grep} "$@"\n',
    ).rename(tmp_path / "grep" / "bin" / "grep")
    monkeypatch.setenv("PATH", f"{tmp_path / 'grep' / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    found = audit.audit_data_root(str(docker), key_needles(pem))
    assert [f.where for f in found] == [f"data root: {root / 'overlay2' / 'abc' / 'leaked'}"]
    assert seen.exists()
    assert seen.read_bytes() == b""
    assert list(temp.iterdir()) == []
