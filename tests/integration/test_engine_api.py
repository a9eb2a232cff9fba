"""The built image's id and size, read with one request on the engine's socket.

Both real engines (20.10 on the default socket, 28 with the containerd image
store through DOCKER_HOST) must give the answer `docker image inspect` gives.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from securebuild_tasks.engine import (
    DEFAULT_SOCKET,
    Engine,
    engine_socket,
    inspect_over_socket,
    inspect_with_cli,
)
from tests.support.fixtures import ModernEngine

pytestmark = pytest.mark.engine


def _same_image(socket_answer: dict[str, Any] | None, cli_answer: dict[str, Any]) -> None:
    assert socket_answer is not None, "the engine's socket gave no image"
    for field in ("Id", "Size", "RepoTags", "RepoDigests"):
        assert socket_answer.get(field) == cli_answer.get(field), field


def test_default_socket_answers_as_the_cli_does(
    engine: Engine, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    socket_path = engine_socket()
    assert socket_path, "the default engine is reached through its Unix socket"
    _same_image(
        inspect_over_socket(socket_path, base_image), inspect_with_cli(engine.docker, base_image)
    )
    assert inspect_over_socket(socket_path, "securebuild-test/no-such-image:0") is None


def test_docker_host_socket_answers_as_the_cli_does(
    modern_engine: ModernEngine, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in modern_engine.env.items():
        monkeypatch.setenv(name, value)
    socket_path = engine_socket()
    assert socket_path
    assert socket_path != DEFAULT_SOCKET
    cli = json.loads(modern_engine.run("image", "inspect", base_image).stdout)[0]
    _same_image(inspect_over_socket(socket_path, base_image), cli)
