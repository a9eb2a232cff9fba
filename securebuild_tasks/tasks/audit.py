"""The ``audit`` task: search an image for private-key material."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.tasks import task

from ..settings import HELP
from ._common import reports_errors, settings_for


@task(
    auto_shortflags=False,
    help={
        "image": "image to audit (name:tag); default: the configured image and tag",
        "data-root": "also search the daemon's data root for the configured key",
        "docker": HELP["docker"],
    },
)
@reports_errors
def audit(c: Context, image: str = "", data_root: bool = False, docker: str | None = None) -> None:
    """Search an image's layers, config and history for private keys; exit 7 on a finding."""
    from ..audit import run_audit

    settings = settings_for(c, docker=docker)
    run_audit(settings, image or settings.image_ref, data_root=data_root, report=sys.stdout)
    print(f"securebuild: audit of {image or settings.image_ref}: clean", file=sys.stderr)
