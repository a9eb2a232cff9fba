"""Running the tool the way a user does: a fresh interpreter, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment without settings or an agent of the test runner's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECUREBUILD_", "SSH_"))}
    env.update(extra)
    return env


def run_cli(
    module: str,
    cwd: Path,
    *args: str,
    env: Mapping[str, str],
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` in ``cwd``; output captured, exit code not checked."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
