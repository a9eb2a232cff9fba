"""The standalone `securebuild` command and `python -m securebuild_tasks`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from securebuild_tasks import cli
from securebuild_tasks.tasks import make_collection
from tests.support.cli import run_cli, run_in_pty, user_env


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


def test_quick_answers_match_the_invoke_program(tmp_path: Path) -> None:
    """`--list` and `--version`, answered without invoke, print what invoke
    prints, at the terminal's width; `--help` shows every task line as invoke
    does and only core options invoke has, worded as invoke words them."""
    if sys.platform == "win32":
        pytest.skip("pseudo-terminals are POSIX")
    env = user_env()
    for columns in (80, 52, 140):
        for args in (["--list"], ["-l"], ["--version"]):
            quick = run_in_pty("securebuild_tasks", tmp_path, *args, env=env, columns=columns)
            full = run_in_pty(
                "securebuild_tasks.program", tmp_path, *args, env=env, columns=columns
            )
            assert quick == full, (args, columns)
            assert quick[0] == 0
        code, help_out = run_in_pty(
            "securebuild_tasks", tmp_path, "--help", env=env, columns=columns
        )
        _, full_help = run_in_pty(
            "securebuild_tasks.program", tmp_path, "--help", env=env, columns=columns
        )
        assert code == 0
        # The task listing is the last section of invoke's help: all of it is in ours.
        listing = full_help[full_help.index(b"Subcommands:") :].rstrip()
        assert listing in help_out, columns
    from securebuild_tasks.program import program

    invoke_options = set(program.initial_context.help_tuples())
    assert set(cli.CORE_OPTIONS) <= invoke_options
    assert (
        "-h [STRING], --help[=STRING]",
        "Show core or per-task help and exit.",
    ) in cli.CORE_OPTIONS


@pytest.mark.parametrize("args", [["--list"], ["--help"], ["--version"]])
def test_a_broken_config_file_is_reported_by_the_quick_answers_too(
    tmp_path: Path, args: list[str]
) -> None:
    """invoke reads securebuild.yaml before it answers anything and stops on a broken
    one: so do the quick answers, with the same line and exit code."""
    (tmp_path / "securebuild.yaml").write_text("securebuild: [unclosed\n")
    quick = run_cli("securebuild_tasks", tmp_path, *args, env=user_env())
    full = run_cli("securebuild_tasks.program", tmp_path, *args, env=user_env())
    assert (quick.returncode, quick.stdout, quick.stderr) == (
        full.returncode,
        full.stdout,
        full.stderr,
    )
    assert quick.returncode == 2
    assert "cannot parse" in quick.stderr


def test_task_summaries_are_the_tasks_help_lines() -> None:
    """The table `securebuild --help` prints from is each task's docstring line."""
    from invoke.util import helpline

    tasks = make_collection().tasks
    assert {name: helpline(task) for name, task in tasks.items()} == cli.TASK_SUMMARIES


@pytest.mark.parametrize("args", [[], ["--help"], ["-l"], ["--version"]])
def test_quick_answers_import_no_dependency(tmp_path: Path, args: list[str]) -> None:
    """Help, list and version load neither invoke nor any library a task uses."""
    probe = (
        "import sys\n"
        f"sys.argv = ['securebuild', *{args!r}]\n"
        "from securebuild_tasks.cli import main\n"
        "main()\n"
        "heavy = ('invoke', 'docker', 'keyring', 'dotenv', 'cryptography', 'yaml', 'typing')\n"
        "sys.stderr.write(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=user_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout
    assert done.stderr == ""


def test_importing_the_package_loads_the_tasks_on_first_use(tmp_path: Path) -> None:
    """`import securebuild_tasks` is light; `add_to`, `ns` and `Settings` still work,
    and a wrong name is an AttributeError."""
    probe = (
        "import sys\n"
        "import securebuild_tasks\n"
        "assert 'invoke' not in sys.modules, 'invoke imported early'\n"
        "from invoke import Collection\n"
        "ns = securebuild_tasks.add_to(Collection())\n"
        "assert 'build-image' in ns.tasks\n"
        "assert securebuild_tasks.ns.name == 'securebuild'\n"
        "assert securebuild_tasks.Settings.__name__ == 'Settings'\n"
        "assert 'add_to' in dir(securebuild_tasks)\n"
        "try:\n"
        "    securebuild_tasks.no_such_name\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=user_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "no attribute 'no_such_name'" in done.stdout


def test_an_interactive_session_outlives_the_tools_one_line_errors(tmp_path: Path) -> None:
    """Once the tasks are loaded, this tool's uncaught errors are one line; in
    `python -i` the session goes on after it rather than ending."""
    script = (
        "import securebuild_tasks; securebuild_tasks.ns; "
        "securebuild_tasks.resolve(flags={'image': 'Bad Name'})"
    )
    done = subprocess.run(
        [sys.executable, "-i", "-c", script],
        input='print("still here")\n',
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=user_env(),
        check=False,
    )
    assert "still here" in done.stdout
    assert done.returncode == 0
    assert "setting image from flag --image is not a valid image" in done.stderr
    assert "Traceback" not in done.stderr
