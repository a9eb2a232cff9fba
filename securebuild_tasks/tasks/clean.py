"""The ``clean`` task: remove what this tool made, and nothing else."""

from __future__ import annotations

import sys

from invoke.context import Context

from ..settings import Settings
from ._common import dry, project_dir, setting_task


@setting_task(
    "context",
    "wheelhouse",
    extra_help={
        "dry-run": "list what would be removed, remove nothing (so does `inv --dry clean`)",
        "local-only": "clean only files (wheelhouse, leftovers), not images or build cache",
    },
)
def clean(c: Context, settings: Settings, dry_run: bool = False, local_only: bool = False) -> None:
    """Remove the wheelhouse, this project's dangling images, all private build cache.

    The build cache of private steps is the engine's, every project's on it:
    BuildKit records no project for a cache record.
    """
    from ..clean import clean as run_clean

    dry_run = dry_run or dry(c)
    kept: list[str] = []
    items = run_clean(settings, project_dir(c), dry_run=dry_run, local_only=local_only, kept=kept)
    verb = "would remove" if dry_run else "removed"
    for item in items:
        print(f"securebuild: {verb} {item.describe()}", file=sys.stderr)
    for reason in kept:
        print(f"securebuild: kept {reason}", file=sys.stderr)
    if not items and not kept:
        print("securebuild: nothing to clean", file=sys.stderr)
