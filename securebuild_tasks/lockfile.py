"""Lock files and wheelhouses: what `inv lock` and `inv vendor` write, and the
checks that keep a build from using them when they no longer fit.

Resolution itself is uv's (``uv pip compile --generate-hashes``, run inside the
target image by the template's ``lock`` stage). uv was chosen over pip-tools
because it pins git dependencies to the full commit SHA the tag pointed at
(pip-compile keeps the tag, so a moved tag changes the build), and because
`uv pip compile` reads ``pyproject.toml`` dependencies as well as
``requirements.in``. This module only adds a header recording what the lock was
made from, and checks a lock before a build trusts it.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RequirementsError, SettingsError, read_bytes
from .requirements import Requirements, parse_requirements

HEADER = "# securebuild-lock: "
INPUT_CANDIDATES = ("requirements.in", "pyproject.toml")
MANIFEST = "manifest.json"
HASHES = "requirements.hashes"
#: The mark `write_manifest` puts in every manifest: a folder without it is not
#: a wheelhouse of this tool's, whatever files it holds.
GENERATOR = "securebuild-tasks"
# A line of the template's wheel manifest; /tmp/wheels is the mount point inside
# the build, not a path on this machine.
_HASH_LINE = re.compile(r"/tmp/wheels/(\S+\.whl) --hash=sha256:([0-9a-f]{64})")  # noqa: S108


@dataclass(frozen=True)
class LockInput:
    """The file a lock is resolved from, relative to the context, and its digest."""

    path: Path
    relative: str
    sha256: str


def find_input(context: Path, configured: str) -> LockInput:
    """The configured input, or the first of requirements.in and pyproject.toml."""
    candidates = (configured,) if configured else INPUT_CANDIDATES
    for name in candidates:
        path = context / name
        if path.is_file():
            data = read_bytes(path, "lock input", RequirementsError)
            if not data.strip():
                raise RequirementsError(
                    f"lock input {path} is empty",
                    hint="list your requirements in it, one per line",
                )
            return LockInput(path, name, input_digest(path, data))
    wanted = configured or " or ".join(INPUT_CANDIDATES)
    raise RequirementsError(
        f"no lock input: {wanted} not found in {context}",
        hint="create requirements.in (what you depend on, loosely pinned), or set"
        " securebuild.lock_input",
    )


def tomllib() -> Any:
    """The TOML reader: the standard library's, or tomli before Python 3.11."""
    if sys.version_info >= (3, 11):
        import tomllib as reader
    else:  # pragma: no cover - Python 3.10
        import tomli as reader
    return reader


def input_digest(path: Path, data: bytes) -> str:
    """What a lock's header records of its input: a requirements.in's sha256, or
    for a pyproject.toml that of the parts `uv pip compile` resolves from (the
    project's dependencies, extras, Python requirement and dynamic fields, the
    build system, uv's own table), so a new version number or another tool's
    table leaves the lock fresh. A pyproject.toml that is not TOML is hashed
    whole (the lock task refuses it in its own words)."""
    if path.name != "pyproject.toml":
        return hashlib.sha256(data).hexdigest()
    toml = tomllib()
    try:
        parsed = toml.loads(data.decode("utf-8"))
    except (toml.TOMLDecodeError, UnicodeDecodeError):
        return hashlib.sha256(data).hexdigest()
    project = parsed.get("project") if isinstance(parsed.get("project"), dict) else {}
    tool = parsed.get("tool") if isinstance(parsed.get("tool"), dict) else {}
    relevant = {
        "project": {
            key: project[key]
            for key in ("dependencies", "optional-dependencies", "requires-python", "dynamic")
            if key in project
        },
        "build-system": parsed.get("build-system"),
        "tool.uv": tool.get("uv"),
    }
    canonical = json.dumps(relevant, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()


def partial_path(lock: Path) -> Path:
    """Where ``inv lock`` writes the lock before renaming it into place."""
    return lock.with_name(f".{lock.name}.tmp")


def finish(
    raw: str, source: LockInput, options: tuple[str, ...] = (), build_constraints: str = ""
) -> str:
    """Prepend the securebuild header, and the input's own option lines, to uv's output;
    append the locked build requirements of its git packages, if any.

    uv writes no index options into a lock (its ``--emit-index-url`` would copy
    the configured indexes, tokens in their URLs included): the input's own
    lines (``--extra-index-url``, ``--find-links``; never credentials, which
    are refused in a requirements file) are carried over, so a build from the
    lock looks where the resolution looked.

    ``build_constraints`` is uv's hash-pinned lock of those build requirements
    (see ``build_requires``). It goes into the same file, so that one review
    sees every pin, as comment lines (``#build: NAME==VERSION --hash=...``, one
    per requirement) that pip and uv skip when they install the lock: they are
    build constraints, not packages to install.
    """
    carried = "".join(f"{line}\n" for line in options)
    lock = f"{HEADER}input={source.relative} sha256={source.sha256}\n{carried}{raw}"
    if not build_constraints.strip():
        return lock
    pins = _build_pins(parse_requirements(build_constraints, Path("build-constraints.txt")))
    block = "".join(f"{BUILD_PREFIX}{pin}\n" for pin in pins)
    return f"{lock.rstrip()}\n\n{BUILD_COMMENT}{block}"


#: The prefix of a lock's build constraint lines, and the comment before them.
BUILD_PREFIX = "#build: "
BUILD_COMMENT = (
    "# The build requirements of the git packages above, locked: not installed,\n"
    "# the build gives them to uv as build constraints (hash-checked).\n"
)


def _build_pins(requirements: Requirements) -> list[str]:
    """One line per requirement: NAME==VERSION (or NAME @ URL) [; MARKER] --hash=...,
    no continuation. A requirement uv could not hash (a git URL) is left out:
    there is nothing to check it against."""
    pins = []
    for entry in requirements.entries:
        if not entry.hashes:
            continue
        marker = f" ; {entry.marker}" if entry.marker else ""
        hashes = "".join(f" --hash={digest}" for digest in entry.hashes)
        pin = f"{entry.name} @ {entry.url}" if entry.url else f"{entry.name}{entry.specifier}"
        pins.append(f"{pin}{marker}{hashes}")
    return pins


def build_constraints(lock_path: Path, text: str | None = None) -> str:
    """The build constraints a lock (or its ``text``) holds (``#build:`` lines), as a
    requirements file for uv's ``--build-constraints``; "" when it has none. Each
    must be an exact version (or a URL) with hashes: a lock edited into anything
    else is refused."""
    if text is None:
        text = read_bytes(lock_path, "lock", RequirementsError).decode("utf-8", "replace")
    lines = [
        (number, line[len(BUILD_PREFIX) :])
        for number, line in enumerate(text.splitlines(), start=1)
        if line.startswith(BUILD_PREFIX)
    ]
    for number, line in lines:
        try:
            parsed = parse_requirements(f"{line}\n", lock_path).entries
        except RequirementsError:
            parsed = ()
        pinned = parsed[0].url or parsed[0].pinned_version if len(parsed) == 1 else False
        if not (pinned and parsed[0].hashes):
            raise RequirementsError(
                f"{lock_path.name} line {number} is a build constraint without an exact"
                " version and sha256 hashes",
                hint="regenerate the lock with `inv lock` (do not edit a lock by hand)",
            )
    return "".join(f"{line}\n" for _, line in lines)


#: A lock's first line. The input's name may hold spaces: the digest after it ends the line.
_HEADER_LINE = re.compile(re.escape(HEADER) + r"input=(.+) sha256=([0-9a-f]{64})")


def source_of(lock_path: Path) -> str:
    """The input a lock (one `check` passed) was resolved from, relative to the context."""
    with lock_path.open(encoding="utf-8-sig") as lock:
        match = _HEADER_LINE.fullmatch(lock.readline().rstrip("\r\n"))
    return match.group(1) if match else ""


def check(lock_path: Path, context: Path) -> Requirements:
    """Parse a lock, refusing one that is stale or was edited into an unsafe state."""
    try:
        text = lock_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RequirementsError(
            f"cannot read lock {lock_path}: {exc.__class__.__name__}",
            hint="check its permissions, or regenerate it with `inv lock`",
        ) from None
    text = text.removeprefix("\ufeff")  # an editor's byte order mark, which pip drops too
    first = text.splitlines()[0] if text else ""
    match = _HEADER_LINE.fullmatch(first)
    if not match:
        raise RequirementsError(
            f"{lock_path} has no securebuild-lock header, so its origin is unknown",
            hint="regenerate it with `inv lock` (do not edit a lock by hand)",
        )
    source = context / match.group(1)
    if not source.is_file():
        raise RequirementsError(
            f"{lock_path} was made from {match.group(1)}, which no longer exists",
            hint="run `inv lock` again, or delete the lock",
        )
    data = read_bytes(source, "lock input", RequirementsError)
    # Locks made before pyproject.toml was digested by its parts hold the whole file's.
    if match.group(2) not in (input_digest(source, data), hashlib.sha256(data).hexdigest()):
        raise RequirementsError(
            f"{lock_path.name} is stale: {match.group(1)} changed since it was locked",
            hint="run `inv lock` to resolve again",
        )
    requirements = parse_requirements(text, lock_path)
    build_constraints(lock_path, text)
    for entry in requirements.entries:
        where = f"{lock_path.name} line {entry.line} ({entry.name})"
        if entry.url:
            # A VCS URL is pinned by its commit; an archive URL by its hashes.
            vcs = re.match(r"(git|hg|svn|bzr)\+", entry.url) is not None
            if vcs and not entry.pinned_commit:
                raise RequirementsError(
                    f"{where} is not pinned to a commit SHA",
                    hint="regenerate the lock with `inv lock` (do not edit a lock by hand)",
                )
            if not vcs and not entry.hashes:
                raise RequirementsError(
                    f"{where} is a URL without sha256 hashes",
                    hint="regenerate the lock with `inv lock` (do not edit a lock by hand)",
                )
        elif not entry.pinned_version or not entry.hashes:
            raise RequirementsError(
                f"{where} lacks an exact version with sha256 hashes",
                hint="regenerate the lock with `inv lock` (do not edit a lock by hand)",
            )
    return requirements


def uv_config_from_pip(pip_conf: Path) -> str:
    """Translate a pip.conf's index settings into uv.toml, so one file configures both.

    Only index location keys are carried over (index-url, extra-index-url,
    find-links, no-index); tokens inside those URLs come along unchanged.
    A file pip could not read either is refused here, before the build: the
    parser's own messages quote the offending line, token and all, so the
    error names only the file and the line number.
    """
    try:
        text = pip_conf.read_text("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(
            f"pip_config {pip_conf} is not UTF-8 text", hint="save it as UTF-8"
        ) from None
    except OSError as exc:
        raise SettingsError(
            f"cannot read pip_config {pip_conf}: {exc.strerror}",
            hint="check the file's permissions",
        ) from None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        line = _first_bad_line(text)
        where = f" (line {line})" if line else ""
        raise SettingsError(
            f"pip_config {pip_conf} cannot be read as a pip config{where}: {type(exc).__name__}",
            hint="a pip config is an INI file: [global] on the first line, then key = value lines",
        ) from None
    values: dict[str, str] = {}
    for section in ("global", "install", "download", "wheel"):
        if parser.has_section(section):
            # pip's own key normalisation: index_url and --index-url are index-url.
            values.update(
                (key.lower().replace("_", "-").removeprefix("--"), value)
                for key, value in parser.items(section)
            )
    lines = []
    if values.get("index-url"):
        lines.append(f"index-url = {json.dumps(values['index-url'].strip())}")
    for key in ("extra-index-url", "find-links"):
        items = values.get(key, "").split()
        if items:
            lines.append(f"{key} = {json.dumps(items)}")
    if values.get("no-index", "").strip().lower() in {"1", "true", "yes", "on"}:
        lines.append("no-index = true")
    return "\n".join(lines) + "\n" if lines else ""


def _first_bad_line(text: str) -> int | None:
    """The first line number at which ``text`` stops parsing as INI (pip configs are short).

    Found by parsing ever longer beginnings rather than read from the error:
    the errors disagree on where they keep it, and detect-secrets replaces
    configparser's ParsingError with one that keeps no lines at all.
    """
    lines = text.splitlines(keepends=True)
    for number in range(1, len(lines) + 1):
        try:
            configparser.ConfigParser(interpolation=None).read_string("".join(lines[:number]))
        except configparser.Error:
            return number
    return None


@dataclass(frozen=True)
class Wheel:
    """One file of a wheelhouse, with its hash."""

    file: str
    sha256: str


def _manifest(folder: Path) -> dict[str, Any] | None:
    """``folder``'s manifest when `inv vendor` wrote it (it bears the generator
    mark), else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(manifest, dict) and manifest.get("generator") == GENERATOR:
        return manifest
    return None


def previous_wheelhouse(wheelhouse: Path) -> Path:
    """Where `inv vendor` keeps the previous wheelhouse while it swaps in the new one."""
    return wheelhouse.with_name(f".{wheelhouse.name}.old")


def is_wheelhouse(folder: Path) -> bool:
    """Whether ``folder`` is a wheelhouse `inv vendor` made. A link is never one
    (removing through it would empty a folder that lives elsewhere)."""
    return not folder.is_symlink() and _manifest(folder) is not None


def requirements_digest(path: Path) -> str:
    """The sha256 of the requirements file (or lock) a wheelhouse is made from."""
    return hashlib.sha256(read_bytes(path, "requirements file", RequirementsError)).hexdigest()


def write_manifest(wheelhouse: Path, source: str, digest: str) -> list[Wheel]:
    """Hash every wheel and write manifest.json; check it against the build's own list.

    ``source`` names the requirements file (or lock) the wheels were built
    from and ``digest`` is its sha256, so a build can tell a wheelhouse made
    from another version of that file.
    """
    wheels = [
        Wheel(path.name, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(wheelhouse.glob("*.whl"))
    ]
    built = _hash_lines(wheelhouse / HASHES)
    if built != {w.file: w.sha256 for w in wheels}:
        raise RequirementsError(
            f"the wheels exported to {wheelhouse} do not match the hashes the build recorded",
            hint="run `inv vendor` again; if it repeats, check the disk and the build cache",
        )
    manifest = {
        "generator": GENERATOR,
        "requirements": source,
        "requirements_sha256": digest,
        "wheels": [{"file": w.file, "sha256": w.sha256} for w in wheels],
    }
    (wheelhouse / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return wheels


def _hash_lines(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _HASH_LINE.fullmatch(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def check_wheelhouse(
    wheelhouse: Path, requirements: Path, lock: Requirements | None = None
) -> list[Wheel]:
    """Verify a wheelhouse against its manifest, that it was made from ``requirements``
    as that file is now (a wheelhouse of an older lock would install the older
    versions), and that it holds a wheel for every package of ``lock``."""
    manifest = _manifest(wheelhouse) or {}  # not vendor's: no "wheels", refused below
    try:
        wheels = [Wheel(str(w["file"]), str(w["sha256"])) for w in manifest["wheels"]]
    except (KeyError, TypeError):
        raise RequirementsError(
            f"wheelhouse {wheelhouse} has no readable {MANIFEST} made by `inv vendor`",
            hint="recreate it with `inv vendor`, or move the folder away",
        ) from None
    for wheel in wheels:
        path = wheelhouse / wheel.file
        if "/" in wheel.file or "\\" in wheel.file or not path.is_file():
            raise RequirementsError(
                f"wheelhouse {wheelhouse} lacks {wheel.file}, listed in its manifest",
                hint="recreate it with `inv vendor`",
            )
        if hashlib.sha256(path.read_bytes()).hexdigest() != wheel.sha256:
            raise RequirementsError(
                f"{wheel.file} in {wheelhouse} does not match its manifest hash (tampered?)",
                hint="recreate the wheelhouse with `inv vendor` from a trusted lock",
            )
    if _hash_lines(wheelhouse / HASHES) != {w.file: w.sha256 for w in wheels}:
        raise RequirementsError(
            f"{HASHES} in {wheelhouse} does not match {MANIFEST}",
            hint="recreate the wheelhouse with `inv vendor`",
        )
    if manifest.get("requirements_sha256") != requirements_digest(requirements):
        raise RequirementsError(
            f"wheelhouse {wheelhouse} was not made from {requirements.name} as it is now",
            hint="run `inv vendor` again (after `inv lock`, when you use a lock)",
        )
    if lock is not None:
        # The manifest and hashes agree, but a wheel may have been taken out of both.
        from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

        try:
            names = {parse_wheel_filename(w.file)[0] for w in wheels}
        except InvalidWheelFilename:
            raise RequirementsError(
                f"{MANIFEST} in {wheelhouse} lists a file that is not a wheel",
                hint="recreate the wheelhouse with `inv vendor`",
            ) from None
        # A line with an environment marker is built only where the marker holds:
        # pip, building the wheelhouse in the target image, judged that.
        needed = {canonicalize_name(e.name) for e in lock.entries if not e.marker}
        missing = sorted(needed - names)
        if missing:
            raise RequirementsError(
                f"wheelhouse {wheelhouse} lacks {', '.join(missing)}, which the lock needs",
                hint="run `inv vendor` after `inv lock`",
            )
    return wheels
