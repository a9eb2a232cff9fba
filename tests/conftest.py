"""Shared test plumbing: real parts are required in CI and optional elsewhere."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The real parts (engine, base image, git server, index) shared by every test
# package that needs them, started once per session.
pytest_plugins = ["tests.support.fixtures"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, reason: str) -> None:
    """Skip locally when a real part is missing; in CI, fail instead of skipping."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def private_tmpdir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A temp dir of the test's own (TMPDIR for it and its children).

    Leftover checks then see only this test's work directories, whatever else
    runs on the machine. The path is short: agent sockets live below it.
    """
    tmp_path_factory.getbasetemp()  # pytest's own base stays in the real temp dir
    path = Path(tempfile.mkdtemp(prefix="sbt-"))
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)
