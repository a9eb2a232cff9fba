"""What a built image's own layers hold: every file they add on top of the base image.

`docker save` gives one tar per layer. Layers are laid over each other in
order, with the OCI whiteout rules: ``.wh.<name>`` deletes a lower file or
folder, ``.wh..wh..opq`` hides everything a lower layer put in its folder.
The benchmark weighs images with this, and tests use it to prove what the
image holds besides the venv and the app.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path


def added_files(
    docker: str, image: str, base_image: str, env: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Every path the layers of ``image`` past ``base_image``'s add, with its size.

    Paths are absolute; folders and links count as zero bytes; a file a later
    layer deletes is not listed.
    """

    def run(*args: str) -> str:
        return subprocess.run(
            [docker, *args], env=env, capture_output=True, text=True, check=True
        ).stdout

    inspected = run("image", "inspect", "--format", "{{json .RootFS.Layers}}", base_image)
    base_layers = len(json.loads(inspected))
    files: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="sbt-layers-") as tmp:
        saved = Path(tmp) / "image.tar"
        run("save", "--output", str(saved), image)
        with tarfile.open(saved) as outer:
            listed = outer.extractfile("manifest.json")
            if listed is None:
                raise ValueError(f"docker save of {image} has no manifest.json")
            for layer in json.load(listed)[0]["Layers"][base_layers:]:
                member = outer.extractfile(layer)
                if member is None:
                    raise ValueError(f"docker save of {image} lacks its layer {layer}")
                with tarfile.open(fileobj=member) as inner:
                    apply_layer(files, inner.getmembers())
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
