"""The ``clean`` task: remove what this tool made, and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from ..settings import HELP
from ._common import reports_errors, settings_for


@task(
    auto_shortflags=False,
    help={
        "dry-run": "list what would be removed, remove nothing",
        "local-only": "clean only files (wheelhouse, leftovers), not images or build cache",
        "context": HELP["context"],
        "wheelhouse": HELP["wheelhouse"],
    },
)
@reports_errors
def clean(
    c: Context,
    dry_run: bool = False,
    local_only: bool = False,
    context: str | None = None,
    wheelhouse: str | None = None,
) -> None:
    """Remove the wheelhouse, this project's dangling images and private build cache."""
    from ..clean import clean as run_clean

    settings = settings_for(c, context=context, wheelhouse=wheelhouse)
    items = run_clean(settings, Path.cwd(), dry_run=dry_run, local_only=local_only)
    verb = "would remove" if dry_run else "removed"
    for item in items:
        print(f"securebuild: {verb} {item.describe()}", file=sys.stderr)
    if not items:
        print("securebuild: nothing to clean", file=sys.stderr)
