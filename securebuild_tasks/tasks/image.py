"""The ``build-image`` task: the old ``make build-image``, without the key leak."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from ..settings import HELP
from ._common import reports_errors, settings_for

_FLAGS = (
    "image",
    "tag",
    "dockerfile",
    "context",
    "requirements",
    "target",
    "platform",
    "network",
    "docker",
    "builder",
    "progress",
    "key_source",
    "agent_key",
    "key_file",
    "known_hosts",
    "ca_bundle",
    "pip_config",
)


# Long flags only: with this many options invoke's generated short flags run out.
@task(
    auto_shortflags=False,
    help={
        **{name.replace("_", "-"): HELP[name] for name in _FLAGS},
        "audit": "audit the built image for private-key material; fail the build on a finding",
        "json": "print a JSON summary on stdout (build output stays on stderr)",
    },
)
@reports_errors
def build_image(
    c: Context,
    image: str | None = None,
    tag: str | None = None,
    dockerfile: str | None = None,
    context: str | None = None,
    requirements: str | None = None,
    target: str | None = None,
    platform: str | None = None,
    network: str | None = None,
    docker: str | None = None,
    builder: str | None = None,
    progress: str | None = None,
    key_source: str | None = None,
    agent_key: str | None = None,
    key_file: str | None = None,
    known_hosts: str | None = None,
    ca_bundle: str | None = None,
    pip_config: str | None = None,
    no_cache: bool = False,
    audit: bool = False,
    json: bool = False,
) -> None:
    """Build the image, forwarding the SSH key to BuildKit (never into a layer)."""
    from ..build import build_image as run_build

    settings = settings_for(
        c,
        image=image,
        tag=tag,
        dockerfile=dockerfile,
        context=context,
        requirements=requirements,
        target=target,
        platform=platform,
        network=network,
        docker=docker,
        builder=builder,
        progress=progress,
        key_source=key_source,
        agent_key=agent_key,
        key_file=key_file,
        known_hosts=known_hosts,
        ca_bundle=ca_bundle,
        pip_config=pip_config,
        # A bool flag only ever turns the setting on; off means "not given".
        no_cache=True if no_cache else None,
        audit=True if audit else None,
    )
    audit = settings.audit
    result = run_build(settings, cwd=Path.cwd(), out=sys.stderr)
    how = (
        "offline from the wheelhouse"
        if result.offline
        else f"with key {result.key_fingerprint} from {result.key_source}"
    )
    print(
        f"securebuild: built {result.image} ({result.image_id[:19]}, "
        f"{result.size / 1e6:.1f} MB) in {result.seconds:.1f} s {how}",
        file=sys.stderr,
    )
    if audit:
        from ..audit import run_audit

        # With --json, stdout carries only the summary: findings go to stderr.
        run_audit(settings, result.image, report=sys.stderr if json else sys.stdout)
        print(f"securebuild: audit of {result.image}: clean", file=sys.stderr)
    else:
        print(
            "securebuild: audit: not run (--audit, or securebuild.audit, searches the image"
            " for key material)",
            file=sys.stderr,
        )
    if json:
        import json as json_module

        summary = {
            "image": result.image,
            "id": result.image_id,
            "size": result.size,
            "seconds": round(result.seconds, 3),
            "key_fingerprint": result.key_fingerprint or None,
            "key_source": result.key_source or None,
            "offline": result.offline,
            "audit": "clean" if audit else None,
        }
        print(json_module.dumps(summary))
