"""The ``doctor`` task: say whether a build can work here, and what to fix."""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit

from ..settings import Settings
from ._common import project_dir, setting_task


@setting_task("context", "key_source", "key_file", "docker")
def doctor(c: Context, settings: Settings) -> None:
    """Check docker, BuildKit, the key source, host keys and the Dockerfile; exit 1 on a problem."""
    from ..doctor import run_checks

    checks = run_checks(settings, project_dir(c))
    for check in checks:
        print(check.line())
    failed = [check for check in checks if not check.ok]
    if failed:
        raise Exit(
            f"securebuild: doctor found {len(failed)} problem(s); fix them, then build", code=1
        )
