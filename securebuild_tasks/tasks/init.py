"""The ``init`` task: scaffold a project for securebuild-tasks."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from ._common import reports_errors


@task(
    auto_shortflags=False,
    help={
        "python": "Python version of the default base image (python:VERSION-slim)",
        "base-image": "base image instead of python:VERSION-slim",
        "entry": "module the image runs (python -m ENTRY)",
        "force": "overwrite an existing Dockerfile and .env.example (never tasks.py)",
    },
)
@reports_errors
def init(
    c: Context, python: str = "3.12", base_image: str = "", entry: str = "app", force: bool = False
) -> None:
    """Write a Dockerfile, tasks.py, .env.example and .dockerignore entries (keeps yours)."""
    from ..scaffold import init_project, tasks_py_hint

    for written in init_project(
        Path.cwd(), python=python, base_image=base_image, entry=entry, force=force
    ):
        print(f"securebuild: {written.action} {written.path.name}", file=sys.stderr)
        if written.path.name == "tasks.py" and written.action == "kept":
            print(tasks_py_hint(written.path), file=sys.stderr)
