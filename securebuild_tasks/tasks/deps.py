"""The ``lock`` and ``vendor`` tasks: reproducible, offline-capable dependencies."""

from __future__ import annotations

import sys

from invoke.context import Context

from ..settings import Settings
from ._common import project_dir, setting_task

_SHARED = (
    "context",
    "network",
    "docker",
    "builder",
    "key_source",
    "agent_key",
    "key_file",
    "known_hosts",
    "ca_bundle",
    "pip_config",
    "installer",
)


@setting_task(*_SHARED, "lock_input", "lock_file", "uv_config")
def lock(c: Context, settings: Settings) -> None:
    """Resolve requirements inside the target image into a hash-pinned lock file."""
    from ..build import lock as run_lock

    written = run_lock(settings, cwd=project_dir(c), out=sys.stderr)
    print(f"securebuild: wrote {written}", file=sys.stderr)


@setting_task(*_SHARED, "lock_file", "wheelhouse")
def vendor(c: Context, settings: Settings) -> None:
    """Build wheels for every locked requirement into a hash-checked wheelhouse."""
    from ..build import vendor as run_vendor

    written = run_vendor(settings, cwd=project_dir(c), out=sys.stderr)
    count = len(list(written.glob("*.whl")))
    print(f"securebuild: {count} wheels in {written} (manifest.json)", file=sys.stderr)
