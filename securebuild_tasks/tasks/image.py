"""The ``build-image`` task: the old ``make build-image``, without the key leak."""

from __future__ import annotations

import sys

from invoke.context import Context

from ..settings import Settings
from ._common import project_dir, setting_task


@setting_task(
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
    "installer",
    switches=("no_cache", "audit"),
    extra_help={
        "audit": "audit the built image for private-key material; fail the build on a finding",
        "json": "print a JSON summary on stdout (build output stays on stderr)",
    },
)
def build_image(c: Context, settings: Settings, json: bool = False) -> None:
    """Build the image, forwarding the SSH key to BuildKit (never into a layer)."""
    from ..build import build_image as run_build

    result = run_build(settings, cwd=project_dir(c), out=sys.stderr)
    if result.offline:
        how = "offline from the wheelhouse"
    elif not result.key_fingerprint:
        how = "with no key (nothing is fetched over SSH)"
    else:
        how = f"with key {result.key_fingerprint} from {result.key_source}"
    print(
        f"securebuild: built {result.image} ({result.image_id[:19]}, "
        f"{result.size / 1e6:.1f} MB) in {result.seconds:.1f} s {how}",
        file=sys.stderr,
    )
    if settings.audit:
        from ..audit import run_audit

        # With --json, stdout carries only the summary: findings go to stderr.
        run_audit(
            settings, result.image, cwd=project_dir(c), report=sys.stderr if json else sys.stdout
        )
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
            "audit": "clean" if settings.audit else None,
        }
        print(json_module.dumps(summary))
