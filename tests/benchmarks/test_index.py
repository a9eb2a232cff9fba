"""The benchmark's PyPI-like index serves what PyPI serves, so the figures mean something.

A resolver reads a wheel's dependencies from the ``.metadata`` file the page
announces (PEP 658, under PEP 714's name) only if the announced hash matches;
pages and files carry PyPI's caching headers; connections are kept alive.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import zipfile
from pathlib import Path
from urllib.parse import urljoin

import pytest

from tests.support.realparts import PyPILikeIndex


def _wheel(folder: Path, name: str, version: str, dist_name: str) -> Path:
    """A minimal wheel whose METADATA spells its name ``dist_name``."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist_name}\n"
                         f"Version: {version}\nRequires-Dist: six\n")  # fmt: skip
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "jinja_lite", "3.1.6", "Jinja-Lite")
    served = PyPILikeIndex(wheels, tmp_path / "index").start()
    yield served
    served.stop()


def test_pages_announce_metadata_that_matches_what_is_served(index: PyPILikeIndex) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", index.port, timeout=10)
    conn.request("GET", "/simple/jinja-lite/")
    page = conn.getresponse()
    body = page.read().decode()
    assert page.status == 200
    assert page.getheader("Cache-Control") == "max-age=600, public"
    href, wheel_hash, core = re.search(
        r'href="([^"#]+)#sha256=([0-9a-f]{64})" data-core-metadata="sha256=([0-9a-f]{64})"', body
    ).groups()  # type: ignore[union-attr]
    # PEP 714's name only: pip before 23.2 mishandles the old one.
    assert "data-dist-info-metadata" not in body
    file_path = urljoin("/simple/jinja-lite/", href)  # as a client resolves it
    assert file_path.startswith("/files/")
    conn.request("GET", file_path)
    wheel = conn.getresponse()
    content = wheel.read()
    assert hashlib.sha256(content).hexdigest() == wheel_hash
    assert "immutable" in (wheel.getheader("Cache-Control") or "")
    conn.request("GET", file_path + ".metadata")
    metadata = conn.getresponse().read()
    assert hashlib.sha256(metadata).hexdigest() == core
    assert b"Name: Jinja-Lite" in metadata


def test_connections_are_kept_alive(index: PyPILikeIndex) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", index.port, timeout=10)
    for _ in range(3):
        conn.request("GET", "/simple/jinja-lite/")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        assert not response.will_close
