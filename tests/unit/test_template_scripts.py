"""The template's shell scripts read a requirements file as the tool (and pip) do.

The runtime step installs the lines that are not URLs, found by an awk script
in the template; the tool sends the URL lines to the SSH step. Run here with
this machine's awk on text that trips naive readers: both must split a file
the same way, or a requirement is installed twice, or not at all.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from securebuild_tasks.build import template_path
from securebuild_tasks.requirements import parse_requirements
from tests.support.dockerfile import index_filter

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


@pytest.mark.skipif(shutil.which("awk") is None, reason="no awk on this machine")
def test_index_lines_are_the_tools_non_url_requirements(tmp_path: Path) -> None:
    """The awk filter keeps exactly the requirements the tool does not send over SSH."""
    index = subprocess.run(
        ["awk", index_filter(template_path().read_text())],
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
