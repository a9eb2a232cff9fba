"""Images are weighed the way their layers stack (tests.support.layers, the benchmark).

`docker save` gives one tar per layer; a later layer deletes a lower file with
a whiteout (``.wh.<name>``) and hides a whole lower folder with an opaque
marker (``.wh..wh..opq``). What a layer deletes must not be counted, or a
build that cleans up after itself would look as large as one that does not.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
from pathlib import Path
from types import ModuleType

from tests.support.layers import apply_layer

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sbt_bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def _layer(entries: dict[str, bytes | None]) -> list[tarfile.TarInfo]:
    """A real layer tar (a None entry is a folder), read back as its members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        return tar.getmembers()


def test_whiteouts_and_opaque_folders_remove_lower_files() -> None:
    bench = _bench()
    files: dict[str, int] = {}
    apply_layer(files, _layer({
        "vendor/": None,
        "vendor/python/numpy.whl": b"w" * 100,
        "vendor/python/attrs.whl": b"w" * 10,
        "root/.cache/pip/http/blob": b"c" * 40,
        "usr/lib/python3/dist-packages/attrs/__init__.py": b"p" * 7,
        "usr/lib/python3/dist-packages/attrs/__pycache__/__init__.cpython-311.pyc": b"b" * 5,
    }))  # fmt: skip
    apply_layer(files, _layer({
        "./vendor/.wh.python": b"",
        "root/.cache/uv/kept": b"k" * 3,  # this layer's own, listed before its marker
        "root/.cache/.wh..wh..opq": b"",
        "app/main.py": b"a" * 2,
    }))  # fmt: skip

    assert files == {
        "/vendor": 0,
        "/usr/lib/python3/dist-packages/attrs/__init__.py": 7,
        "/usr/lib/python3/dist-packages/attrs/__pycache__/__init__.cpython-311.pyc": 5,
        "/root/.cache/uv/kept": 3,
        "/app/main.py": 2,
    }
    assert bench.bytes_by_kind(files) == {
        "wheel files": 0,
        "caches": 3,
        "bytecode": 5,
        "packages": 7,
        "other": 2,
    }
    assert bench.leftovers(files) == ["pip/uv caches"]


def test_a_vendor_folder_and_its_wheels_are_leftovers() -> None:
    bench = _bench()
    files: dict[str, int] = {}
    apply_layer(files, _layer({"vendor/python/attrs.whl": b"w"}))
    assert bench.leftovers(files) == ["wheel files", "vendor folder"]
    assert bench.bytes_by_kind(files)["wheel files"] == 1
