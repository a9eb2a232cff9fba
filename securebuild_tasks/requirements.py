"""Reading a requirements file: what it installs and which SSH git hosts it needs.

Requirement syntax is parsed by ``packaging`` (the parser pip itself vendors);
this module only handles the requirements-file layer around it (comments,
continuations, per-line options) and refuses what would leak into the image.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import RequirementsError
from .settings import QUERY_SECRET as _QUERY_SECRET
from .settings import SLASHED_USERINFO

# The per-requirement option pip and uv both take after a requirement (any run
# of spaces, or "=", before its value); and those uv refuses there.
_LINE_OPTION = re.compile(r"\s--hash(?:=|\s+)\S+")
_BUILD_OPTION = re.compile(r"\s(--config-settings|--global-option|-C)")
# Credentials in a URL ("https://user:token@host"): the requirements file is
# copied into the build, so they would end up in a layer.
_URL_CREDENTIALS = re.compile(
    rf"[a-z][a-z0-9+.-]*://(?:[^/\s@]+:[^/\s@]+@|{SLASHED_USERINFO})"
    # Over http(s) a user name alone is a token too ("https://TOKEN@host"); over
    # SSH it is only the login ("git@host"), which is allowed.
    r"|\bhttps?://[^/\s@]+@",
    re.IGNORECASE,
)
_HASH = re.compile(r"--hash(?:=|\s+)([a-z0-9]+:[0-9a-fA-F]+)")
_HOST = re.compile(r"^[A-Za-z0-9_.:\[\]-]+$")
_COMMIT_PIN = re.compile(r"@[0-9a-f]{40}(#.*)?$")
# File-level options that are harmless to pass through to pip in the build.
_FILE_OPTIONS = (
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--no-binary",
    "--only-binary",
    "--prefer-binary",
    "--pre",
    "--trusted-host",
)


@dataclass(frozen=True, order=True)
class SSHHost:
    """A git host reached over SSH, as known_hosts names it."""

    host: str
    port: int = 22

    @property
    def known_hosts_name(self) -> str:
        """The host as written in known_hosts: ``host`` or ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        return self.host if self.port == 22 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Entry:
    """One requirement line: its name, URL or version pin, and hashes."""

    line: int
    name: str
    url: str
    specifier: str
    hashes: tuple[str, ...]
    #: The environment marker, when the line has one (``sys_platform == "win32"``).
    marker: str = ""

    @property
    def pinned_commit(self) -> bool:
        """A VCS URL ending in a full 40-hex commit SHA (``@<sha>``)."""
        return bool(_COMMIT_PIN.search(self.url))

    @property
    def pinned_version(self) -> bool:
        """An exact ``==`` version (not a range, not ``===``-free text)."""
        return self.specifier.startswith("==") and "," not in self.specifier


@dataclass(frozen=True)
class Requirements:
    """The parsed content of a requirements file."""

    path: Path
    names: tuple[str, ...]
    private: tuple[str, ...]
    ssh_hosts: tuple[SSHHost, ...]
    entries: tuple[Entry, ...] = ()
    #: The file's option lines (index settings), as pip reads them.
    options: tuple[str, ...] = ()
    #: The requirements fetched from a URL (private git packages), whole lines.
    url_lines: tuple[str, ...] = ()

    @property
    def url_requirements(self) -> str:
        """What installs first, over SSH: the URL lines after the option lines; else empty."""
        return "\n".join((*self.options, *self.url_lines)) if self.url_lines else ""


def check_hash_mode(requirements: Requirements) -> None:
    """Refuse a file whose hashes pip and uv would refuse, before any build.

    A single ``--hash`` puts the whole file in hash-checking mode (pip's rule,
    which the template follows with uv too): every requirement from the index
    then needs an exact ``==`` version and a hash. URL requirements are
    fetched in their own step and keep their own hashes, if any.
    """
    if not any(entry.hashes for entry in requirements.entries):
        return
    for entry in requirements.entries:
        if not entry.url and not (entry.pinned_version and entry.hashes):
            raise RequirementsError(
                f"{requirements.path.name} line {entry.line} ({entry.name}) lacks an exact"
                " version with sha256 hashes, while other lines have hashes",
                hint="a file with hashes is installed all or nothing: pin it with == and --hash,"
                " or let `inv lock` write a lock",
            )


def read_requirements(path: Path) -> Requirements:
    """Parse ``path``; raise `RequirementsError` naming the file and line on bad input."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RequirementsError(
            f"requirements file {path} does not exist",
            hint="create it, or point securebuild.requirements at yours",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RequirementsError(
            f"cannot read requirements file {path}: {exc.__class__.__name__}",
            hint="check its permissions and that it is UTF-8 text",
        ) from None
    return parse_requirements(text, path)


def parse_requirements(text: str, path: Path) -> Requirements:
    """Parse requirements-file ``text``; ``path`` is only used in messages."""
    text = text.removeprefix("\ufeff")  # a byte order mark, which pip drops too
    from packaging.requirements import InvalidRequirement, Requirement

    names: list[str] = []
    private: list[str] = []
    hosts: set[SSHHost] = set()
    entries: list[Entry] = []
    options: list[str] = []
    url_lines: list[str] = []
    _check_spacing(text, path)
    _check_coding(text, path)
    logical = _logical_lines(text)
    # Comments too: the file is copied whole, comments and all. The logical
    # lines are checked as well, for a URL split by a continuation.
    for lineno, line in [*enumerate(text.splitlines(), start=1), *logical]:
        if _URL_CREDENTIALS.search(line):
            raise RequirementsError(
                f"{path} line {lineno} has credentials in a URL; the file is copied into the image",
                hint="move the index and its token to a pip.conf given as securebuild.pip_config",
            )
        if _QUERY_SECRET.search(line):
            raise RequirementsError(
                f"{path} line {lineno} has a URL whose query looks like a token; the file"
                " is copied into the image",
                hint="fetch it from an index whose token is in a pip.conf given as"
                " securebuild.pip_config, or from a URL without one",
            )
    for lineno, line in logical:
        where = f"{path} line {lineno}"
        if line.startswith("-"):
            _check_option(line, where)
            options.append(line)
            continue
        whole = line
        build_option = _BUILD_OPTION.search(" " + line)
        if build_option:
            raise RequirementsError(
                f"{where} gives {build_option.group(1)} to one requirement, which uv refuses"
                " (it installs for the build and for `inv lock`)",
                hint="set build options for every package in uv_config or pip_config, or"
                " build the package into a wheel on an index",
            )
        hashes = tuple(_HASH.findall(line))
        line = _LINE_OPTION.sub("", " " + line).strip()
        specifier = marker = ""
        if re.match(r"^[a-z][a-z0-9+.-]*://", line, re.IGNORECASE):
            name, url = _bare_url(line, where), line
        else:
            try:
                req = Requirement(line)
            except InvalidRequirement as exc:
                first = str(exc).splitlines()[0] if str(exc) else "invalid requirement"
                raise RequirementsError(
                    f"{where} is not a valid requirement ({first})",
                    hint="write NAME[==VERSION] or NAME @ git+ssh://git@HOST/ORG/REPO.git@TAG",
                ) from None
            name, url, specifier = req.name, req.url or "", str(req.specifier)
            marker = str(req.marker) if req.marker else ""
        names.append(name)
        entries.append(Entry(lineno, name, url, specifier, hashes, marker))
        if url:
            url_lines.append(whole)
        host = _ssh_host(url, where)
        if host is not None:
            private.append(name)
            hosts.add(host)
    if not names:
        raise RequirementsError(
            f"requirements file {path} lists no requirement",
            hint="add at least one NAME or NAME @ URL line",
        )
    return Requirements(
        path,
        tuple(names),
        tuple(private),
        tuple(sorted(hosts)),
        tuple(entries),
        tuple(options),
        tuple(url_lines),
    )


def _check_coding(text: str, path: Path) -> None:
    """Refuse a coding line (PEP 263, in the first two lines) that is not UTF-8:
    pip decodes the file in that encoding, the tool and the build's line reader
    in UTF-8, and the two readings can hold different lines (in Latin-1, the
    byte 0x85 of a UTF-8 letter is a line break)."""
    import codecs

    for lineno, line in enumerate(text.split("\n")[:2], start=1):
        declared = re.search(r"coding[:=]\s*([-\w.]+)", line) if line.startswith("#") else None
        if declared is None:
            continue
        try:
            utf8 = codecs.lookup(declared.group(1)).name == "utf-8"
        except LookupError:
            utf8 = False
        if not utf8:
            raise RequirementsError(
                f"{path} line {lineno} declares the encoding {declared.group(1)!r}, which pip"
                " reads the file in, while the build reads it as UTF-8",
                hint="save the file as UTF-8 and remove the coding line",
            )
        return


def _check_spacing(text: str, path: Path) -> None:
    """Refuse spacing pip and the template's line reader (awk, in the build) read
    apart: pip splits lines at any Unicode line break and takes any Unicode
    space as a space (a no-break space before "#" starts a comment for pip),
    while awk splits at "\\n" and knows only spaces and tabs. Read two ways, a
    line could be installed by neither step without a word. Past a "#" both
    take for a comment's start, a space is the comment's own; a line break
    never is."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        comment = re.search(r"(?:^|[ \t])#", line)
        code = line[: comment.start()] if comment else line
        # Trailing spaces of any kind are stripped alike by both readers.
        odd = re.search(r"[^\S \t](?=.*\S)", code) or re.search(
            r"[\r\v\f\x1c-\x1e\x85\u2028\u2029]", line
        )
        if odd is not None:
            raise RequirementsError(
                f"{path} line {lineno} has the character U+{ord(odd.group()):04X}, which pip"
                " reads as a space or a line break and the build does not",
                hint="type a plain space, tab or newline in its place",
            )


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations and drop comments, as pip does."""
    lines: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not buffer:
            start = number
        comment = re.match(r"\s*#", raw) is not None
        # pip never continues a comment line: its backslash is part of the comment.
        if raw.endswith("\\") and not comment:
            buffer += raw.strip("\\")
            continue
        # A comment line ends a continuation, joined with a space (pip's rule),
        # so the comment is dropped rather than glued to the requirement.
        logical = re.sub(r"(^|\s+)#.*$", "", buffer + (" " if comment else "") + raw).strip()
        buffer = ""
        if logical:
            lines.append((start, logical))
    if buffer.strip():
        lines.append((start, re.sub(r"(^|\s+)#.*$", "", buffer).strip()))
    return lines


#: pip's requirement-file options (pip/_internal/req/req_file.py): its long names,
#: the short names that stand for them, and those that take a value.
_PIP_LONG = (
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "--constraint",
    "--requirement",
    "--editable",
    "--find-links",
    "--no-binary",
    "--only-binary",
    "--prefer-binary",
    "--require-hashes",
    "--pre",
    "--trusted-host",
    "--use-feature",
    "--global-option",
    "--config-settings",
    "--hash",
)
_PIP_SHORT = {
    "-i": "--index-url",
    "-c": "--constraint",
    "-r": "--requirement",
    "-e": "--editable",
    "-f": "--find-links",
    "-C": "--config-settings",
}
_PIP_FLAGS = ("--no-index", "--prefer-binary", "--require-hashes", "--pre")


@dataclass(frozen=True)
class Option:
    """One option of an option line: as written, pip's long name for it, its value."""

    written: str
    name: str
    value: str
    #: A short option's value written onto it (``-fURL``).
    attached: bool = False


def split_options(line: str) -> list[Option]:
    """The options of an option line, read as pip's optparse reads them: shell
    words, several options to a line, ``--opt=value``, ``--opt value``, a short
    option's attached value (``-fURL``) and a long option's unique prefix
    (``--extra``). An option pip would not know keeps its written name."""
    import shlex

    try:
        words = shlex.split(line)
    except ValueError:  # an unclosed quote: pip fails on it too
        words = line.split()
    found: list[Option] = []
    while words:
        word = words.pop(0)
        if word.startswith("--"):
            written, equals, value = word.partition("=")
            known = [name for name in _PIP_LONG if name.startswith(written)]
            name = written if written in _PIP_LONG else (known[0] if len(known) == 1 else written)
        elif word.startswith("-"):
            written, value = word[:2], word[2:]  # a short option's value may be attached
            name = _PIP_SHORT.get(written, written)
            equals = "=" if value else ""
        else:
            continue  # a stray word: pip's parser leaves it aside too
        attached = bool(equals) and not word.startswith("--")
        if not equals and name in _PIP_LONG and name not in _PIP_FLAGS and words:
            value = words.pop(0)
        found.append(Option(written, name, value, attached))
    return found


def _check_option(line: str, where: str) -> None:
    options = split_options(line)
    for option in options:
        _check_one_option(option, where)
    # uv, which installs for the build and for `inv lock`, reads an option line
    # as one option, spelled out, its value after "=" or a space: anything else
    # it misreads (the rest of the line taken as one URL) or refuses, where pip
    # would have read it. Only that form reads the same to both.
    if len(options) > 1:
        raise RequirementsError(
            f"{where} has several options on one line ({', '.join(o.written for o in options)}),"
            " which uv reads as one",
            hint="put each option on a line of its own",
        )
    for option in options:
        if option.written.startswith("--") and option.written != option.name:
            raise RequirementsError(
                f"{where} shortens {option.name} to {option.written}, which uv does not take",
                hint=f"write {option.name} in full",
            )
        if option.attached:
            raise RequirementsError(
                f"{where} writes the value onto {option.written}, which uv does not take",
                hint=f"put a space between them: {option.written} {option.value}",
            )


#: File-level options pip takes and uv ignores, saying so only in the build log,
#: that change which versions are installed; with what to do instead. (uv
#: ignores --trusted-host too, but that changes no version: plain http works
#: without it, and an https certificate uv does not trust fails the build.)
_UV_IGNORES = {
    "--pre": "pin the pre-release itself (NAME==2.0b1), which uv and pip both take",
    "--prefer-binary": "pin a version that has a wheel, or list the package under --only-binary",
}


def file_options(requirements: Requirements) -> Iterator[Option]:
    """Every option of the file's option lines, each read as pip reads it."""
    for line in requirements.options:
        yield from split_options(line)


def refuse_options_uv_ignores(requirements: Requirements, why: str) -> None:
    """Refuse a file option uv would drop: the build would install something else
    than the same file does under pip, without failing. ``why`` says why uv is
    the installer here."""
    for option in file_options(requirements):
        if option.name in _UV_IGNORES:
            raise RequirementsError(
                f"{requirements.path.name} has {option.name}, which uv ignores, and {why}",
                hint=_UV_IGNORES[option.name],
            )


def _check_one_option(parsed: Option, where: str) -> None:
    option = parsed.written
    if parsed.name in ("--requirement", "--constraint"):
        raise RequirementsError(
            f"{where} includes another file ({option}), which the build cannot see",
            hint="merge the files into one requirements file",
        )
    if parsed.name == "--editable":
        raise RequirementsError(
            f"{where} is an editable requirement; an image needs a real install",
            hint="write NAME @ URL instead of -e URL",
        )
    if parsed.name == "--find-links":
        where_to = parsed.value.strip()
        # An absolute path may be a folder inside the image (a Dockerfile of the
        # user's own); a relative one is a folder here, which the build lacks.
        if "://" not in where_to and not where_to.startswith("/"):
            raise RequirementsError(
                f"{where} points {option} at a folder on this machine ({where_to or 'none'}),"
                " which the build cannot see",
                hint="serve those files over HTTP, or build offline from a wheelhouse"
                " (`inv vendor`)",
            )
    if parsed.name not in _FILE_OPTIONS:
        raise RequirementsError(
            f"{where} has the option {option}, which this tool does not pass to pip",
            hint=f"use only {', '.join(_FILE_OPTIONS)}; other pip settings go in pip_config",
        )


def _bare_url(line: str, where: str) -> str:
    match = re.search(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    if not match:
        raise RequirementsError(
            f"{where} is a URL without a package name",
            hint="write NAME @ URL",
        )
    return match.group(1)


def _ssh_host(url: str, where: str) -> SSHHost | None:
    lowered = url.lower()
    if re.match(r"^(hg|svn|bzr)\+ssh://", lowered):
        raise RequirementsError(
            f"{where} fetches over SSH with {lowered.split('+')[0]}, which the build's pinned"
            " host keys do not cover",
            hint="use git+ssh:// URLs, or a package index",
        )
    if not lowered.startswith(("git+ssh://", "ssh://")):
        # git's scp-like form, with or without "git+": pip cannot fetch it, and uv
        # takes "git@host:org/repo.git" for a local folder named "git@host:org".
        if re.match(r"^(?:git\+)?[a-z0-9._-]+@[a-z0-9.-]+:(?!//)", lowered):
            raise RequirementsError(
                f"{where} uses git's scp-like form USER@HOST:PATH, which pip and uv cannot fetch",
                hint="write git+ssh://git@HOST/PATH.git@TAG",
            )
        return None
    try:
        # urlsplit itself raises on a bad "[...]" host; port 0 must not become 22.
        parts = urlsplit(url.split("+", 1)[1] if lowered.startswith("git+") else url)
        host, port = parts.hostname, 22 if parts.port is None else parts.port
    except ValueError:
        host, port = None, -1
    # A host name beginning with "-" would reach ssh as an option (-oProxyCommand=...).
    if not host or host.startswith("-") or not _HOST.match(host) or not 0 < port < 65536:
        raise RequirementsError(
            f"{where} has an SSH URL without a valid host or port",
            hint="write git+ssh://git@HOST[:PORT]/PATH.git@TAG",
        )
    return SSHHost(host, port)
