"""The standalone `securebuild` command and `python -m securebuild_tasks`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import run_cli, user_env


def _run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("securebuild_tasks", cwd, *args, env=user_env(**env))


def test_module_lists_every_task_without_a_tasks_py(tmp_path: Path) -> None:
    """`python -m securebuild_tasks --list` works in a folder with no tasks.py."""
    done = _run(tmp_path, "--list")
    assert done.returncode == 0, done.stderr
    for name in ("build-image", "lock", "vendor", "clean", "store-key", "forget-key"):
        assert name in done.stdout
    version = _run(tmp_path, "--version")
    assert version.stdout.strip().startswith("securebuild ")


def test_project_config_file_and_precedence(tmp_path: Path) -> None:
    """securebuild.yaml in the working directory is read; the environment beats it."""
    (tmp_path / "securebuild.yaml").write_text("securebuild:\n  tag: from-yaml\n  image: shop\n")
    rows = dict(line.split()[:2] for line in _run(tmp_path, "show-settings").stdout.splitlines())
    assert rows["tag"] == "from-yaml"
    assert rows["image"] == "shop"
    rows = dict(
        line.split()[:2]
        for line in _run(tmp_path, "show-settings", SECUREBUILD_TAG="from-env").stdout.splitlines()
    )
    assert rows["tag"] == "from-env"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    """An invalid setting through the standalone command: one line, exit 2."""
    done = _run(tmp_path, "build-image", SECUREBUILD_KEY_SOURCE="usb")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        line for line in done.stderr.strip().splitlines() if line.startswith("securebuild: error:")
    ]
    assert "Traceback" not in done.stderr


def test_console_script_is_installed() -> None:
    """The `securebuild` console script exists where this package is installed."""
    script = shutil.which("securebuild", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("package not installed with its scripts (pip install -e . installs them)")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, check=False)
    assert done.stdout.startswith("securebuild ")
