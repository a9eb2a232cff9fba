"""The ``doctor`` task: say whether a build can work here, and what to fix."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ..settings import HELP
from ._common import reports_errors, settings_for


@task(
    auto_shortflags=False,
    help={n.replace("_", "-"): HELP[n] for n in ("context", "key_source", "key_file", "docker")},
)
@reports_errors
def doctor(
    c: Context,
    context: str | None = None,
    key_source: str | None = None,
    key_file: str | None = None,
    docker: str | None = None,
) -> None:
    """Check docker, BuildKit, the key source, host keys and the Dockerfile; exit 1 on a problem."""
    from ..doctor import run_checks

    settings = settings_for(
        c, context=context, key_source=key_source, key_file=key_file, docker=docker
    )
    checks = run_checks(settings, Path.cwd())
    for check in checks:
        print(check.line())
    failed = [check for check in checks if not check.ok]
    if failed:
        raise Exit(
            f"securebuild: doctor found {len(failed)} problem(s); a build would fail", code=1
        )
