"""The ``lock`` and ``vendor`` tasks: reproducible, offline-capable dependencies."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from ..settings import HELP
from ._common import reports_errors, settings_for

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
)


@task(
    auto_shortflags=False,
    help={n.replace("_", "-"): HELP[n] for n in (*_SHARED, "lock_input", "lock_file", "uv_config")},
)
@reports_errors
def lock(
    c: Context,
    context: str | None = None,
    network: str | None = None,
    docker: str | None = None,
    builder: str | None = None,
    key_source: str | None = None,
    agent_key: str | None = None,
    key_file: str | None = None,
    known_hosts: str | None = None,
    ca_bundle: str | None = None,
    pip_config: str | None = None,
    lock_input: str | None = None,
    lock_file: str | None = None,
    uv_config: str | None = None,
) -> None:
    """Resolve requirements inside the target image into a hash-pinned lock file."""
    from ..build import lock as run_lock

    settings = settings_for(
        c,
        context=context,
        network=network,
        docker=docker,
        builder=builder,
        key_source=key_source,
        agent_key=agent_key,
        key_file=key_file,
        known_hosts=known_hosts,
        ca_bundle=ca_bundle,
        pip_config=pip_config,
        lock_input=lock_input,
        lock_file=lock_file,
        uv_config=uv_config,
    )
    written = run_lock(settings, cwd=Path.cwd(), out=sys.stderr)
    print(f"securebuild: wrote {written}", file=sys.stderr)


@task(
    auto_shortflags=False,
    help={n.replace("_", "-"): HELP[n] for n in (*_SHARED, "lock_file", "wheelhouse")},
)
@reports_errors
def vendor(
    c: Context,
    context: str | None = None,
    network: str | None = None,
    docker: str | None = None,
    builder: str | None = None,
    key_source: str | None = None,
    agent_key: str | None = None,
    key_file: str | None = None,
    known_hosts: str | None = None,
    ca_bundle: str | None = None,
    pip_config: str | None = None,
    lock_file: str | None = None,
    wheelhouse: str | None = None,
) -> None:
    """Build wheels for every locked requirement into a hash-checked wheelhouse."""
    from ..build import vendor as run_vendor

    settings = settings_for(
        c,
        context=context,
        network=network,
        docker=docker,
        builder=builder,
        key_source=key_source,
        agent_key=agent_key,
        key_file=key_file,
        known_hosts=known_hosts,
        ca_bundle=ca_bundle,
        pip_config=pip_config,
        lock_file=lock_file,
        wheelhouse=wheelhouse,
    )
    written = run_vendor(settings, cwd=Path.cwd(), out=sys.stderr)
    count = len(list(written.glob("*.whl")))
    print(f"securebuild: {count} wheels in {written} (manifest.json)", file=sys.stderr)
