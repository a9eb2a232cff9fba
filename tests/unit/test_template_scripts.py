"""The template's shell scripts read a requirements file as the tool (and pip) do.

The runtime step installs the lines that are not URLs, found by an awk script
in the template; the tool sends the URL lines to the SSH step. Run here with
each awk a base image may have (mawk, gawk, BusyBox) on text that trips naive
readers: all must split a file the same way, or a requirement is installed
twice, or not at all. The template's greps must answer alike under GNU and
BusyBox grep.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from securebuild_tasks.build import template_path
from securebuild_tasks.requirements import parse_requirements
from tests.conftest import need
from tests.support.dockerfile import GREPS, greps, index_filter, instructions

TRICKY = """\
six==1.16.0 \\
    --hash=sha256:{a}  # a comment after the hash
foo==1.0  # a comment ending in a backslash joins the next line into it \\
bar==2.0
# a comment line ends a continuation, even with a backslash \\
baz==3.0
lib @ git+ssh://git@git.example.com/org/lib.git@v1.0.0
qux>=1 ; python_version >= "3"   # marker
https://files.example.com/bare-1.0.tar.gz#egg=bare
--index-url https://pypi.example.com/simple
cfg==1.0   # a comment holding a URL: https://h.example/x
""".format(a="a" * 64)


def test_index_lines_are_the_tools_non_url_requirements(
    tmp_path: Path, awk: tuple[str, ...]
) -> None:
    """The awk filter keeps exactly the requirements the tool does not send over SSH."""
    index = subprocess.run(
        [*awk, index_filter(template_path().read_text())],
        input=TRICKY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tool = parse_requirements(TRICKY, tmp_path / "requirements.txt")
    by_awk = parse_requirements(index, tmp_path / "index.txt")
    assert [e.name for e in tool.entries if not e.url] == ["six", "foo", "baz", "qux", "cfg"]
    assert [e.name for e in by_awk.entries] == ["six", "foo", "baz", "qux", "cfg"]
    assert [e.hashes for e in by_awk.entries] == [e.hashes for e in tool.entries if not e.url]
    assert "--index-url https://pypi.example.com/simple" in index


@pytest.mark.parametrize(
    ("index", "listed"),
    [
        ("setuptools==69.0.0\n", True),
        ("  setuptools>=60\n", True),
        ("SetupTools\n", True),
        ("setuptools ; python_version >= '3'\n", True),
        ("setuptools-scm==8.0\nsix\n", False),
        ("setuptools_rust\n", False),
        ("six\n", False),
    ],
)
def test_setuptools_is_kept_only_when_the_requirements_name_it(
    tmp_path: Path, index: str, listed: bool
) -> None:
    """The pip path removes the setuptools a venv comes with unless the
    requirements (as the awk filter wrote them) name it; a package whose name
    only starts with it does not count."""
    import re

    found = re.search(r"! grep -Eqi '([^']+)' index\.txt", template_path().read_text())
    assert found is not None
    (tmp_path / "index.txt").write_text(index)
    done = subprocess.run(["grep", "-Eqi", found.group(1), "index.txt"], cwd=tmp_path)
    assert (done.returncode == 0) is listed


#: Lines the template's greps meet: requirement lines with and without
#: hashes, options, URL lines, blank and tab-indented lines, pip's output.
GREP_INPUT = """\
six==1.16.0 --hash=sha256:{a}
six==1.16.0 --hash sha256:{a}
\tfoo==1.0\t--hash=sha256:{a}
lib @ git+ssh://git@git.example.com/org/lib.git@v1.0.0
lib @ https://files.example.com/lib-1.0.tar.gz#sha256={a}
--index-url https://pypi.example.com/simple
  --extra-index-url https://x.example/simple
-r other.txt

\t
setuptools==69.0.0
  SetupTools>=60
setuptools-scm==8.0
setuptools_rust
setuptools ; python_version >= "3"
Required-by:
Required-by: lib
Required-by:\t
setuptools-69.0.0-py3-none-any.whl
Setuptools-69.0.0.tar.gz
requirements.hashes
""".format(a="a" * 64)


@pytest.mark.parametrize(("options", "pattern"), greps(template_path().read_text()))
def test_greps_answer_alike_under_gnu_and_busybox(options: tuple[str, ...], pattern: str) -> None:
    """Each of the template's greps selects the same lines, and answers with the same
    exit status, under GNU grep and BusyBox grep, line by line."""
    need(shutil.which("busybox") is not None, "busybox is not installed")
    listing = tuple(o.replace("q", "") for o in options if o.replace("q", "") != "-")
    lines = GREP_INPUT.splitlines(keepends=True)
    for lines_in in [lines, *([line] for line in lines)]:
        text = "".join(lines_in)
        answers = {}
        for name, argv in GREPS.items():
            listed = subprocess.run(
                [*argv, *listing, "-e", pattern], input=text, capture_output=True, text=True
            )
            asked = subprocess.run(
                [*argv, *options, "-e", pattern], input=text, capture_output=True, text=True
            )
            answers[name] = (listed.stdout, asked.returncode)
        assert answers["gnu"] == answers["busybox"], (pattern, text)
        assert answers["gnu"][1] in (0, 1), (pattern, text)


def test_the_greps_of_the_template_are_all_found() -> None:
    """The grep test above sees every grep in the template that has a literal pattern."""
    text = template_path().read_text()
    patterns = {pattern for _, pattern in greps(text)}
    commands = " ".join(step.args for step in instructions(text) if step.keyword == "RUN")
    assert len(re.findall(r"\b[ef]?grep\b", commands)) == len(greps(text))
    assert "--hash[=[:space:]]" in patterns
    assert "^[[:space:]]*[^-[:space:]]" in patterns


def test_patterns_use_only_posix_regular_expressions() -> None:
    """No GNU-only escapes (\\s, \\w, \\+, \\|, ...) in the template's grep and awk
    patterns: musl's regex engine, which BusyBox uses on Alpine, has none of them
    (the BusyBox on this machine uses glibc's, so the parity tests above cannot
    see that)."""
    text = template_path().read_text()
    programs = [pattern for _, pattern in greps(text)] + [index_filter(text)]

    def gnu_escapes(program: str) -> list[str]:
        return [e for e in re.findall(r"\\(.)", program) if e in "sSwWdD+?|<>bB`'"]

    assert {p: gnu_escapes(p) for p in programs if gnu_escapes(p)} == {}
    assert gnu_escapes(r"^[[:space:]]*\s\\+") == ["s"]


def _stage_script(stage: str) -> str:
    """The shell script of the RUN instruction of the template's stage ``stage``."""
    current = ""
    for step in instructions(template_path().read_text()):
        if step.keyword == "FROM":
            current = step.args.split()[-1] if " AS " in step.args.upper() else ""
        elif step.keyword == "RUN" and current == stage:
            return step.args
    raise AssertionError(f"no RUN in stage {stage}")


@pytest.mark.parametrize(
    ("wheelhouse", "layout", "left"),
    [
        ("vendor/python", ["vendor/python/a.whl", "vendor/keep.txt", "app/m.py"],
         ["app", "app/m.py", "vendor", "vendor/keep.txt"]),
        ("vendor/python", ["vendor/python/a.whl", "app/m.py"], ["app", "app/m.py"]),
        ("wheels", ["wheels/a.whl"], []),
        ("", ["app/m.py", "vendor/python/a.whl"],
         ["app", "app/m.py", "vendor", "vendor/python", "vendor/python/a.whl"]),
        ("-rf", ["-rf/a.whl", "app/m.py"], ["app", "app/m.py"]),
    ],
)  # fmt: skip
def test_the_pruned_app_loses_the_wheelhouse_alone_and_is_read_only_to_all_but_root(
    tmp_path: Path, wheelhouse: str, layout: list[str], left: list[str]
) -> None:
    """The stage the app passes through when there is a wheelhouse, or the image
    runs as another user: the wheelhouse goes (and the folders it leaves empty,
    never /app), nothing else does; every file is readable, every folder
    searchable, and only the owner (root) may write."""
    app = tmp_path / "app"
    for name in layout:
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text("x\n")
    (app / "private.py").write_text("x\n")
    (app / "private.py").chmod(0o600)
    (app / "shared.py").write_text("x\n")
    (app / "shared.py").chmod(0o666)
    (app / "tool.sh").write_text("x\n")
    (app / "tool.sh").chmod(0o700)
    (app / "open").mkdir(mode=0o777)
    (app / "open").chmod(0o777)
    (app / "closed").mkdir(mode=0o700)
    script = _stage_script("pruned").replace("/app", str(app))
    subprocess.run(["sh", "-c", script], env={"WHEELHOUSE": wheelhouse, "PATH": "/usr/bin:/bin"},
                   check=True)  # fmt: skip
    found = sorted(str(p.relative_to(app)) for p in app.rglob("*"))
    assert found == sorted([*left, "private.py", "shared.py", "tool.sh", "open", "closed"])
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [app, *app.iterdir()]}
    assert modes["private.py"] == modes["shared.py"] == "0o644"
    assert modes["tool.sh"] == "0o755"
    assert modes["open"] == modes["closed"] == modes[app.name] == "0o755"
