"""The ``init`` task: scaffold a project for securebuild-tasks."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.tasks import task

from ._common import project_dir, reports_errors


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

    # The project's folder, where `inv` found the tasks.py, even from a subfolder.
    project = project_dir(c)
    for written in init_project(
        project, python=python, base_image=base_image, entry=entry, force=force
    ):
        # A .dockerignore written through a link may live elsewhere: its name then.
        inside = written.path.is_relative_to(project)
        shown = written.path.relative_to(project).as_posix() if inside else written.path.name
        print(f"securebuild: {written.action} {shown}", file=sys.stderr)
        if written.path.name in ("tasks.py", "__init__.py") and written.action == "kept":
            hint = tasks_py_hint(written.path)
            if hint:
                print(hint, file=sys.stderr)
