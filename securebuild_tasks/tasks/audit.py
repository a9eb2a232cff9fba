"""The ``audit`` task: search an image for private-key material."""

from __future__ import annotations

import sys

from invoke.context import Context

from ..settings import Settings
from ._common import project_dir, setting_task


@setting_task(
    "docker",
    extra_help={
        "image": "image to audit (name:tag); default: the configured image and tag",
        "data-root": "also search the daemon's data root for the configured key",
    },
)
def audit(c: Context, settings: Settings, image: str = "", data_root: bool = False) -> None:
    """Search an image's layers, config and history for private keys; exit 7 on a finding."""
    from ..audit import run_audit

    run_audit(
        settings,
        image or settings.image_ref,
        cwd=project_dir(c),
        data_root=data_root,
        report=sys.stdout,
    )
    print(f"securebuild: audit of {image or settings.image_ref}: clean", file=sys.stderr)
