"""``init``: set up a project to build with securebuild-tasks.

Writes a Dockerfile rendered from the template, a starter tasks.py (or says
what to add to an existing one), ``.env.example``, and the ``.dockerignore``
entries that keep keys, tokens and ``.env`` out of the build context. An
existing file is never overwritten without ``force``, and a tasks.py never;
``.dockerignore`` only ever gains the entries it lacks.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from .build import ignore_file, template_path
from .errors import SecurebuildError, SettingsError
from .settings import ENV_PREFIX, HELP, defaults, is_image_ref

DOCKERIGNORE_ENTRIES = (
    ".env",
    ".env.*",
    "!.env.example",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    "*.pem",
    "*.key",
    ".netrc",
    "pip.conf",
    "uv.toml",
    ".git",
)

TASKS_PY = '''\
"""Project tasks: `inv build-image`, `inv lock`, `inv vendor`, `inv clean`, ..."""

from invoke import Collection

import securebuild_tasks

ns = Collection()
securebuild_tasks.add_to(ns)
'''

_MODULE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_PYTHON = re.compile(r"\A3\.[0-9]{1,2}\Z")


@dataclass(frozen=True)
class Written:
    """What init did with one file."""

    path: Path
    action: str  # "created", "overwritten", "updated", "kept"


def render_dockerfile(base_image: str, entry: str) -> str:
    """The template with the project's base image and entry module filled in."""
    text = template_path().read_text(encoding="utf-8")
    text = re.sub(r"(?m)^ARG BASE_IMAGE=.*$", f"ARG BASE_IMAGE={base_image}", text, count=1)
    text = re.sub(
        r'(?m)^CMD \["python", "-m", "[^"]*"\]$', f'CMD ["python", "-m", "{entry}"]', text
    )
    return text


def env_example() -> str:
    """Every setting, commented out, with its help line."""
    lines = ["# securebuild-tasks settings; copy to .env (never commit .env).", ""]
    for name, value in defaults().items():
        if name == "env_file":
            continue  # where this file is: set in the environment, not in the file
        shown = ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
        lines.append(f"# {HELP[name]}")
        lines.append(f"# {ENV_PREFIX}{name.upper()}={shown}")
    return "\n".join(lines) + "\n"


def init_project(
    directory: Path, *, python: str, base_image: str, entry: str, force: bool
) -> list[Written]:
    """Scaffold ``directory``; return what was written or kept."""
    if not directory.is_dir():
        raise SettingsError(f"{directory} is not a directory", hint="run init in your project")
    if not _PYTHON.match(python):
        raise SettingsError(f"--python {python!r} is not a Python version", hint="e.g. 3.12")
    if not _MODULE.match(entry):
        raise SettingsError(
            f"--entry {entry!r} is not a module name", hint="e.g. app or myservice.main"
        )
    if base_image and not is_image_ref(base_image):
        raise SettingsError(
            f"--base-image {base_image!r} is not an image reference",
            hint="e.g. python:3.12-slim or registry.example.com/python:3.12",
        )
    base = base_image or f"python:{python}-slim"
    # Everything that could stop init is found before anything is written.
    for name in ("Dockerfile", ".env.example", ".dockerignore", "tasks.py"):
        if (directory / name).exists() and not (directory / name).is_file():
            raise SettingsError(
                f"{directory / name} is not a file, so init cannot write it",
                hint="move it away, then run init again",
            )
    # The ignore file BuildKit will read for this Dockerfile (Dockerfile.dockerignore
    # when there is one), through a link to a shared one.
    ignores = ignore_file(directory, directory / "Dockerfile")
    if ignores.is_symlink():
        ignores = ignores.resolve()
    existing = _read_dockerignore(ignores)
    results = [
        _write(directory / "Dockerfile", render_dockerfile(base, entry), force),
        _write(directory / ".env.example", env_example(), force),
        _dockerignore(ignores, existing),
    ]
    # A tasks.py is the project's own code: kept even with force. So is a tasks/
    # package, which invoke loads as "tasks" too: a tasks.py beside it would
    # take its place and hide its tasks.
    package = directory / "tasks" / "__init__.py"
    if package.is_file():
        results.append(Written(package, "kept"))
    else:
        results.append(_write(directory / "tasks.py", TASKS_PY, force=False))
    return results


def tasks_py_hint(tasks: Path) -> str | None:
    """What to add to an existing tasks.py (or tasks/__init__.py): with its own
    ``ns``, or without one (invoke then collects the module's tasks, and an
    ``ns`` made from scratch would hide them). None when it already uses this
    package: adding it twice would clash."""
    try:
        text = tasks.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    if re.search(r"\bsecurebuild_tasks\b", text):
        return None
    if re.search(r"(?m)^ns\s*[:=]", text):
        lines = ["import securebuild_tasks", "securebuild_tasks.add_to(ns)"]
    else:
        lines = [
            "import sys",
            "from invoke import Collection",
            "import securebuild_tasks",
            "ns = Collection.from_module(sys.modules[__name__])  # your tasks, as inv sees them",
            "securebuild_tasks.add_to(ns)",
        ]
    return f"securebuild: add to the end of your {tasks.name}:\n" + "\n".join(
        f"    {line}" for line in lines
    )


def _write(path: Path, text: str, force: bool) -> Written:
    present = path.exists() or path.is_symlink()  # a dangling link is the user's too
    if present and not force:
        return Written(path, "kept")
    action = "overwritten" if present else "created"
    _replace(path, text)
    return Written(path, action)


def _replace(path: Path, text: str) -> None:
    """Write ``text`` beside ``path``, then rename: never half a file, no leftover."""
    temporary = path.with_name(f".{path.name}.securebuild-tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # not a file of ours (a folder): left as it is
            temporary.unlink(missing_ok=True)
        raise SecurebuildError(
            f"cannot write {path}: {exc.strerror or exc.__class__.__name__}",
            hint="check the folder's permissions and free space, then run init again",
        ) from None


def _read_dockerignore(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8") if path.exists() else ""
    except UnicodeDecodeError:
        raise SettingsError(
            f"{path} is not UTF-8 text, so init cannot add its lines to it",
            hint="save it as UTF-8, then run init again",
        ) from None
    except OSError as exc:
        raise SecurebuildError(
            f"cannot read {path}: {exc.strerror or exc.__class__.__name__}",
            hint="check its permissions, then run init again",
        ) from None


def _dockerignore(path: Path, text: str) -> Written:
    existing = text.splitlines()
    missing = [entry for entry in DOCKERIGNORE_ENTRIES if entry not in existing]
    if not missing:
        return Written(path, "kept")
    block = ["# Added by securebuild-tasks: keys, tokens and .env stay out of builds."]
    lines = [*existing, *([""] if existing else []), *block, *missing]
    newline = "\r\n" if "\r\n" in text else "\n"  # the file's own line ends
    _replace(path, newline.join(lines) + newline)
    return Written(path, "updated" if existing else "created")
