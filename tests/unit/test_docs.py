"""The README documents every setting, and the template is found where users get it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from securebuild_tasks.build import template_path
from securebuild_tasks.settings import ENV_PREFIX, HELP

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting() -> None:
    """Each setting has a README row with its environment variable."""
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `([a-z_]+)` \| `SECUREBUILD_[A-Z_]+` \|", readme, re.MULTILINE))
    assert rows == set(HELP)
    for name in HELP:
        assert f"`{ENV_PREFIX}{name.upper()}`" in readme


def test_template_has_no_syntax_line_and_requires_ssh() -> None:
    """The template builds without pulling a frontend and requires the SSH mount."""
    text = template_path().read_text()
    assert not text.lstrip().startswith("# syntax=")
    assert "--mount=type=ssh,required=true" in text
    assert "ssh-keyscan" not in text
    assert "StrictHostKeyChecking=yes" in text
    assert not re.search(r"^\s*ARG\s+\w*(KEY|TOKEN|SECRET|PASSWORD)", text, re.MULTILINE)


def test_ci_runs_the_readmes_test_command() -> None:
    """.ci/run calls the README's second command, verbatim."""
    readme = (ROOT / "README.md").read_text()
    commands = [
        line
        for line in readme.split("```sh", 1)[1].split("```", 1)[0].splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(commands) == 2
    assert commands[1].endswith("inv test")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_security_table_names_real_tests() -> None:
    """Every test SECURITY.md cites exists (a renamed test cannot leave a stale claim)."""
    text = (ROOT / "SECURITY.md").read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::([\w*\[\],]+))?`", text)
    assert len(cited) >= 15
    for path, name in cited:
        source = (ROOT / path).read_text()
        if name:
            pattern = re.escape(name.split("[")[0]).replace(r"\*", r"\w*")
            assert re.search(rf"^def {pattern}\(", source, re.MULTILINE), f"{path}::{name}"


def test_the_readmes_python_example_names_what_exists() -> None:
    """The README's in-Python call resolves, attribute by attribute, in a fresh
    interpreter after a bare `import securebuild_tasks` (submodules load on use)."""
    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("- In Python: `"))
    call = line.split("`")[1]
    names = re.findall(r"securebuild_tasks(?:\.\w+)+", call)
    assert "securebuild_tasks.build.build_image" in names
    check = "import securebuild_tasks\n" + "".join(f"{name}\n" for name in names)
    check += "print(securebuild_tasks.resolve(flags={'image': 'x'}, environ={}).image)\n"
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "x"
