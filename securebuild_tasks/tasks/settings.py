"""The ``show-settings`` task: what the tool will use, and where each value came from."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from ..settings import describe
from ._common import reports_errors, settings_for


@task
@reports_errors
def show_settings(c: Context) -> None:
    """Print every securebuild setting as resolved here (never a secret)."""
    rows = describe(settings_for(c))
    width = max(len(name) for name, _, _ in rows)
    for name, value, help_text in rows:
        print(f"{name:<{width}}  {value or '-':<30}  {help_text}")
