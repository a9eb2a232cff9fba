"""A failed build is explained by what failed: the engine connection, not the git host."""

from __future__ import annotations

from pathlib import Path

from securebuild_tasks.build import BuildPlan, _explain
from securebuild_tasks.errors import BuildError, EngineError
from securebuild_tasks.requirements import parse_requirements
from securebuild_tasks.settings import Settings

# What docker 20.10 prints when its own ssh to an ssh:// engine is refused.
DIAL_FAILED = (
    "failed to dial gRPC: command [ssh -l root -p 57085 -- 127.0.0.1 docker system dial-stdio]"
    " has exited with exit status 255, please make sure the URL is valid, and Docker 18.09 or"
    " later is installed on the remote host: stderr=root@127.0.0.1: Permission denied"
    " (publickey).\n"
)


def _plan(tmp_path: Path) -> BuildPlan:
    requirements = parse_requirements(
        "privpkg @ git+ssh://git@git.example.com/acme/privpkg.git@v1\n", tmp_path / "r.txt"
    )
    return BuildPlan(Settings(), tmp_path, tmp_path / "Dockerfile", requirements, {}, {})


def test_engine_ssh_refusal_is_not_blamed_on_the_git_host(tmp_path: Path) -> None:
    """ssh to the engine host refused: an engine error (exit 5) quoting ssh, not
    "git host refused the forwarded key"."""
    failed = BuildError("docker build failed", command=["docker"], returncode=1, output=DIAL_FAILED)
    explained = _explain(failed, _plan(tmp_path))
    assert isinstance(explained, EngineError)
    assert explained.exit_code == 5
    assert "could not reach the engine over ssh" in explained.line()
    assert "Permission denied (publickey)" in explained.line()
    assert "git host" not in explained.message
