"""The build requirements of a lock's git packages, read inside the lock step.

``inv lock`` runs this file with the target image's Python, in the template's
lock step, right after uv has written the lock: for every requirement pinned
to a git commit it reads ``[build-system] requires`` from that commit's
``pyproject.toml`` (fetched with git over the forwarded key, as uv fetched it)
and writes them all to one requirements file. The step then locks that file
with hashes, and builds from the lock give the result to uv as build
constraints: the build backend that builds a private package, in the one step
that has the key, is then checked against a hash like every other package.

It runs in images the tool does not control, so it uses the standard library
alone and the syntax of Python 3.8. It reads TOML with ``tomllib`` (Python
3.11) or ``tomli`` when the image has it; without either it writes nothing and
says so, and the lock has no build constraints. uv's own cache is not read:
its layout is uv's business.

First it puts back into the lock the user names uv hides in git URLs that
come from a pyproject.toml's [tool.uv.sources] (uv writes ``****`` for any
but ``git``), from the input's own URLs (INPUT_URLS: the input's URL lines).

    python build_requires.py LOCK OUTPUT [INPUT_URLS]
"""

from __future__ import annotations

import posixpath
import re
import subprocess
import sys
import tempfile
from typing import Any
from urllib.parse import unquote, urlsplit

#: What uv and pip assume for a project without a ``[build-system]`` table.
DEFAULT_REQUIRES = ("setuptools>=40.8.0",)

# `name @ git+URL@SHA[#fragment]`, as uv writes a git requirement into a lock.
_GIT_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*@\s*git\+(?P<url>\S+?)"
    r"@(?P<sha>[0-9a-f]{40})(?:#(?P<fragment>\S*))?(?:\s*;.*)?$"
)


class BuildRequiresError(Exception):
    """A package's build requirements cannot be read."""


def logical_lines(text: str) -> list[str]:
    """The lines of a requirements file as pip reads them: continuations joined,
    comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line = re.sub(r"(^|\s)#.*$", "", pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(re.sub(r"(^|\s)#.*$", "", pending).strip())
    return lines


def git_requirements(text: str) -> list[tuple[str, str, str, str]]:
    """(name, repository URL, commit, subdirectory) of every git requirement of a lock."""
    found = []
    for line in logical_lines(text):
        match = _GIT_LINE.match(line)
        if match is None:
            continue
        fragment = match.group("fragment") or ""
        subdirectory = ""
        for part in fragment.split("&"):
            key, _, value = part.partition("=")
            if key == "subdirectory":
                # As written (`./pkgs/sub`, percent-encoded): git wants a clean path.
                subdirectory = posixpath.normpath(unquote(value)).strip("/")
                subdirectory = "" if subdirectory == "." else subdirectory
        found.append((match.group("name"), match.group("url"), match.group("sha"), subdirectory))
    return found


#: What uv writes for a user name it will not put in a lock (any but ``git``,
#: in URLs from a pyproject.toml's [tool.uv.sources]).
REDACTED = "****"

# A git URL of the input: `git+URL` with an optional `@ref` and `#fragment`.
_INPUT_URL = re.compile(r"git\+(?P<url>\S+?)(?:@[^/@#\s]+)?(?:#\S*)?(?:\s|;|$)")


def _where(url: str) -> tuple[str, str, int | None, str] | None:
    try:
        parts = urlsplit(url)
        return (parts.scheme, (parts.hostname or "").lower(), parts.port, parts.path)
    except ValueError:
        return None


def restore_users(lock: str, input_lines: str) -> str:
    """``lock`` with the user name uv hid (``****``) put back into each git URL,
    from the input's URL for the same repository. uv hides every user name but
    ``git`` in the URLs it takes from [tool.uv.sources]; a lock holding ``****``
    would log in as that. A URL no input URL matches is an error."""
    users = {}
    for match in _INPUT_URL.finditer(input_lines):
        where = _where(match.group("url"))  # None: a URL urlsplit cannot read
        user = urlsplit(match.group("url")).username if where is not None else None
        if where is not None and user:
            users[where] = user
    restored = []
    for line in lock.splitlines(keepends=True):
        found = _GIT_LINE.match(line.rstrip("\r\n").rstrip("\\").rstrip())
        url = found.group("url") if found else ""
        if found and urlsplit(url).username == REDACTED:
            user = users.get(_where(url) or ("", "", None, ""))
            if user is None:
                raise BuildRequiresError(
                    f"the URL of {found.group('name')}: uv hid its user name ({REDACTED}),"
                    " and no URL of the input names that repository"
                )
            line = line.replace(f"//{REDACTED}@", f"//{user}@", 1)
        restored.append(line)
    return "".join(restored)


def _toml() -> Any:
    try:
        import tomllib

        return tomllib
    except ImportError:
        import tomli  # type: ignore[import-not-found,unused-ignore]

        return tomli


def requires_of(pyproject: str | None, toml: Any, where: str) -> list[str]:
    """``[build-system] requires`` of a ``pyproject.toml`` (None: the file is absent)."""
    if pyproject is None:
        return list(DEFAULT_REQUIRES)
    try:
        data = toml.loads(pyproject)
    except ValueError as exc:  # TOMLDecodeError is a ValueError
        raise BuildRequiresError(f"{where}: pyproject.toml is not valid TOML ({exc})") from None
    system = data.get("build-system")
    if system is None:
        return list(DEFAULT_REQUIRES)
    requires = system.get("requires") if isinstance(system, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise BuildRequiresError(f"{where}: [build-system] requires is not a list of strings")
    return [r.strip() for r in requires if r.strip()]


def _git(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def read_pyproject(url: str, sha: str, subdirectory: str, where: str) -> str | None:
    """The ``pyproject.toml`` of ``url`` at ``sha`` (None when it has none): the
    commit alone is fetched where the server allows it, else every ref."""
    with tempfile.TemporaryDirectory() as repo:
        _git("init", "--quiet", "--bare", cwd=repo)
        fetched = _git("fetch", "--quiet", "--depth", "1", url, sha, cwd=repo)
        if fetched.returncode != 0:
            fetched = _git("fetch", "--quiet", url, "+refs/*:refs/securebuild/*", cwd=repo)
        if fetched.returncode != 0:
            said = "; ".join(line.strip() for line in fetched.stderr.splitlines() if line.strip())
            raise BuildRequiresError(f"{where}: git could not fetch it ({said or 'no message'})")
        path = f"{subdirectory}/pyproject.toml" if subdirectory else "pyproject.toml"
        if _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=repo).returncode != 0:
            raise BuildRequiresError(f"{where}: commit {sha} is not in the repository")
        if subdirectory and _git("cat-file", "-e", f"{sha}:{subdirectory}", cwd=repo).returncode:
            raise BuildRequiresError(f"{where}: the commit has no folder {subdirectory}")
        if _git("cat-file", "-e", f"{sha}:{path}", cwd=repo).returncode != 0:
            return None  # no pyproject.toml: setup.py, built with setuptools
        shown = _git("show", f"{sha}:{path}", cwd=repo)
        if shown.returncode != 0:
            said = shown.stderr.strip() or "no message"
            raise BuildRequiresError(f"{where}: git could not read {path} ({said})")
        return shown.stdout


def main(argv: list[str]) -> int:
    lock_path, output = argv[:2]
    with open(lock_path, encoding="utf-8") as lock:
        text = lock.read()
    if len(argv) > 2:
        with open(argv[2], encoding="utf-8") as given:
            try:
                restored = restore_users(text, given.read())
            except BuildRequiresError as exc:
                print(f"securebuild: cannot read {exc}", file=sys.stderr)
                return 1
        if restored != text:
            with open(lock_path, "w", encoding="utf-8") as lock:
                lock.write(restored)
            text = restored
    packages = git_requirements(text)
    if not packages:
        return 0
    try:
        toml = _toml()
    except ImportError:
        print(
            "securebuild: the image's Python has no TOML reader (Python 3.11 or tomli): the"
            " build backends of the git packages are not locked",
            file=sys.stderr,
        )
        return 0
    wanted: list[str] = []
    try:
        for name, url, sha, subdirectory in packages:
            where = f"the build requirements of {name} ({sha[:12]})"
            requires = requires_of(read_pyproject(url, sha, subdirectory, where), toml, where)
            print(f"securebuild: {name} builds with {', '.join(requires)}", file=sys.stderr)
            wanted.extend(r for r in requires if r not in wanted)
    except BuildRequiresError as exc:
        print(f"securebuild: cannot read {exc}", file=sys.stderr)
        return 1
    with open(output, "w", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
