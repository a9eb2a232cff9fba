"""The insecure recipe this project replaces, built on purpose to prove checks can fail.

The key travels as a build arg (argv, history) and is written to
/root/.ssh/id_rsa in an intermediate stage, with the classic builder: every
leak check must find it in the resulting image.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from securebuild_tasks.engine import Engine

OLD_RECIPE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS intermediate
ARG SSH_PRIVATE_KEY
RUN mkdir -p /root/.ssh && echo "${SSH_PRIVATE_KEY}" > /root/.ssh/id_rsa
"""


@contextlib.contextmanager
def old_way_image(
    engine: Engine, base_image: str, key: bytes, workdir: Path, image: str
) -> Iterator[str]:
    """``image`` built the old way (see `build_old_way`), removed afterwards."""
    build_old_way(engine, base_image, key, workdir, image)
    try:
        yield image
    finally:
        subprocess.run(
            [engine.docker, "image", "rm", "-f", image], capture_output=True, check=False
        )


def build_old_way(engine: Engine, base_image: str, key: bytes, workdir: Path, image: str) -> None:
    """The old recipe on purpose: key in argv and a build arg, classic builder."""
    (workdir / "Dockerfile").write_text(OLD_RECIPE)
    subprocess.run(
        [
            engine.docker,
            "build",
            "--network",
            "host",
            "-t",
            image,
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            "--build-arg",
            f"SSH_PRIVATE_KEY={key.decode()}",
            str(workdir),
        ],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        check=True,
    )
