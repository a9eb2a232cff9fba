"""What a built image's own layers hold: every file they add on top of the base image.

`docker save` gives one tar per layer, gzip'd or not depending on the
engine's image store. Layers are laid over each other in
order, with the OCI whiteout rules: ``.wh.<name>`` deletes a lower file or
folder, ``.wh..wh..opq`` hides everything a lower layer put in its folder.
The benchmark weighs images with this, and tests use it to prove what the
image holds besides the venv and the app.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO

#: Compressions a layer or blob may come in, by magic number. Docker 20.10's
#: `docker save` writes layers uncompressed; with the containerd image store
#: (Docker 25+) it writes them as BuildKit stored them, gzip'd.
GZIP = b"\x1f\x8b"
ZSTD = b"\x28\xb5\x2f\xfd"


def open_member(archive: tarfile.TarFile, member: str | tarfile.TarInfo) -> IO[bytes]:
    """A regular file of a tar, decompressed when it is gzip'd.

    A zstd file fails loudly: a search that cannot read it must not pass.
    """
    name = member if isinstance(member, str) else member.name
    extracted = archive.extractfile(member)
    if extracted is None:
        raise ValueError(f"{name} is not a regular file of the archive")
    magic = extracted.read(4)
    extracted.seek(0)
    if magic.startswith(GZIP):
        return gzip.GzipFile(fileobj=extracted, mode="rb")
    if magic == ZSTD:
        raise ValueError(f"{name} is zstd-compressed; this cannot read it")
    return extracted


def layer_streams(archive: tarfile.TarFile, skip: int = 0) -> Iterator[IO[bytes]]:
    """The layer tars of an opened `docker save` archive, bottom first, past the first ``skip``.

    The layers are named by the archive's ``manifest.json``, which both save
    formats (Docker's own and the OCI layout of Docker 25+) write.
    """
    listed = archive.extractfile("manifest.json")
    if listed is None:
        raise ValueError("the docker save archive has no manifest.json")
    for layer in json.load(listed)[0]["Layers"][skip:]:
        yield open_member(archive, layer)


def base_layer_count(docker: str, base_image: str, env: Mapping[str, str] | None = None) -> int:
    """How many layers ``base_image`` has (0 for no base image)."""
    if not base_image:
        return 0
    inspected = subprocess.run(
        [docker, "image", "inspect", "--format", "{{json .RootFS.Layers}}", base_image],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(json.loads(inspected))


def added_files(
    docker: str, image: str, base_image: str, env: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Every path the layers of ``image`` past ``base_image``'s add, with its size.

    Paths are absolute; folders and links count as zero bytes; a file a later
    layer deletes is not listed.
    """
    skip = base_layer_count(docker, base_image, env)
    files: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="sbt-layers-") as tmp:
        saved = Path(tmp) / "image.tar"
        command = [docker, "save", "--output", str(saved), image]
        subprocess.run(command, env=env, capture_output=True, check=True)
        with tarfile.open(saved) as outer:
            for layer in layer_streams(outer, skip):
                with tarfile.open(fileobj=layer, mode="r|") as inner:
                    apply_layer(files, inner)
    return files


def apply_layer(files: dict[str, int], members: Iterable[tarfile.TarInfo]) -> None:
    """Lay one layer's tar members over ``files`` (the OCI whiteout rules).

    Whiteouts apply to the lower layers only, so they are applied before any
    of this layer's own entries, whatever their order in the tar.
    """
    entries: dict[str, int] = {}
    for info in members:
        path = "/" + info.name.removeprefix("./").lstrip("/")
        folder, _, name = path.rpartition("/")
        if name == ".wh..wh..opq":
            gone = [k for k in files if k.startswith(folder + "/")]
        elif name.startswith(".wh."):
            hidden = f"{folder}/{name.removeprefix('.wh.')}"
            gone = [k for k in files if k == hidden or k.startswith(hidden + "/")]
        else:
            entries[path] = info.size if info.isreg() else 0
            continue
        for known in gone:
            del files[known]
    files.update(entries)
