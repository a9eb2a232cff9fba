"""Fixtures of the unit tests."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import need
from tests.support.dockerfile import AWKS


@pytest.fixture(params=sorted(AWKS))
def awk(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The argv prefix of one awk implementation (CI installs each of them)."""
    argv = AWKS[request.param]
    need(shutil.which(argv[0]) is not None, f"{request.param} is not installed")
    return argv
