"""Tests for securebuild_tasks.requirements: names, SSH hosts, and what is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securebuild_tasks.errors import RequirementsError
from securebuild_tasks.requirements import (
    Entry,
    Requirements,
    SSHHost,
    check_hash_mode,
    parse_requirements,
    read_requirements,
)

REQS = Path("ctx/requirements.txt")


def _parse(text: str) -> Requirements:
    return parse_requirements(text, REQS)


def _outcome(text: str) -> Requirements | RequirementsError:
    """What parsing ``text`` gives: the result, or the RequirementsError it raised."""
    try:
        return _parse(text)
    except RequirementsError as exc:
        return exc


def _error(text: str) -> str:
    """The message of the RequirementsError ``text`` must raise."""
    with pytest.raises(RequirementsError) as info:
        _parse(text)
    return str(info.value)


# --- SSHHost --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "known_hosts_name", "shown"),
    [
        (SSHHost("git.example.com"), "git.example.com", "git.example.com"),
        (SSHHost("git.example.com", 22), "git.example.com", "git.example.com"),
        (SSHHost("127.0.0.1", 2222), "[127.0.0.1]:2222", "127.0.0.1:2222"),
        (SSHHost("::1", 2200), "[::1]:2200", "::1:2200"),
    ],
)
def test_ssh_host_names(host: SSHHost, known_hosts_name: str, shown: str) -> None:
    """known_hosts_name is `host` on port 22 and `[host]:port` otherwise."""
    assert host.known_hosts_name == known_hosts_name
    assert str(host) == shown


# --- hosts and names ------------------------------------------------------------------


def test_default_port_host() -> None:
    """A git+ssh URL without a port gives the host on port 22."""
    reqs = _parse("mylib @ git+ssh://git@git.example.com/org/mylib.git@v1.0\n")
    assert reqs.names == ("mylib",)
    assert reqs.private == ("mylib",)
    assert reqs.ssh_hosts == (SSHHost("git.example.com", 22),)
    assert reqs.ssh_hosts[0].known_hosts_name == "git.example.com"


def test_custom_port_host() -> None:
    """A git+ssh URL with a port keeps it, and known_hosts names it [host]:port."""
    reqs = _parse("mylib @ git+ssh://git@127.0.0.1:2222/srv/git/mylib.git@main\n")
    assert reqs.ssh_hosts == (SSHHost("127.0.0.1", 2222),)
    assert reqs.ssh_hosts[0].known_hosts_name == "[127.0.0.1]:2222"


def test_plain_ssh_scheme_and_case() -> None:
    """ssh:// URLs count too, and host names are lower-cased as ssh does."""
    reqs = _parse("lib @ ssh://git@Git.Example.COM/org/lib.git\n")
    assert reqs.ssh_hosts == (SSHHost("git.example.com"),)


def test_ipv6_host_with_port() -> None:
    """A bracketed IPv6 host with a port is parsed without its brackets."""
    reqs = _parse("lib @ git+ssh://git@[::1]:2222/lib.git\n")
    assert reqs.ssh_hosts == (SSHHost("::1", 2222),)
    assert reqs.ssh_hosts[0].known_hosts_name == "[::1]:2222"


def test_hosts_are_unique_and_sorted() -> None:
    """Each (host, port) appears once, sorted; the same host on two ports is two hosts."""
    text = "\n".join(
        [
            "b @ git+ssh://git@zeta.example/b.git",
            "a @ git+ssh://git@alpha.example/a.git",
            "c @ git+ssh://git@alpha.example/c.git",
            "d @ git+ssh://git@alpha.example:2222/d.git",
        ]
    )
    reqs = _parse(text)
    assert reqs.ssh_hosts == (
        SSHHost("alpha.example", 22),
        SSHHost("alpha.example", 2222),
        SSHHost("zeta.example", 22),
    )
    assert reqs.private == ("b", "a", "c", "d")


def test_public_and_private_names() -> None:
    """Index and https requirements are names but not private, and add no host."""
    text = (
        "requests==2.32.3\n"
        "Django>=4,<6\n"
        "attrs[tests]\n"
        "pub @ https://files.example.com/pub-1.0-py3-none-any.whl\n"
        "priv @ git+ssh://git@git.example.com/org/priv.git@v2\n"
    )
    reqs = _parse(text)
    assert reqs.names == ("requests", "Django", "attrs", "pub", "priv")
    assert reqs.private == ("priv",)
    assert reqs.ssh_hosts == (SSHHost("git.example.com"),)
    assert reqs.path == REQS


def test_comments_and_blank_lines() -> None:
    """Full-line and trailing comments and blank lines are ignored."""
    text = "# header\n\n   \nrequests  # pinned elsewhere\n\t# indented comment\nattrs\n"
    assert _parse(text).names == ("requests", "attrs")


def test_continuation_lines() -> None:
    """Backslash continuations join into one requirement."""
    text = (
        "mylib @ \\\n  git+ssh://git@git.example.com/org/mylib.git@v1 \\\n  ; python_version>'3'\n"
    )
    reqs = _parse(text)
    assert reqs.names == ("mylib",)
    assert reqs.ssh_hosts == (SSHHost("git.example.com"),)


def test_comment_line_ending_in_backslash_does_not_swallow_next() -> None:
    """As in pip, a comment's trailing backslash does not continue it onto the next line."""
    assert _parse("# see docs \\\nrequests\n").names == ("requests",)
    assert _parse("requests\n# trailing comment \\").names == ("requests",)


def test_line_numbers_after_continuation() -> None:
    """An error after a continued line names the physical line it is on."""
    text = "requests \\\n  ==2.0\nattrs\n\n!!bad\n"
    assert f"{REQS} line 5 " in _error(text)


def test_error_in_continued_line_names_its_first_line() -> None:
    """An error in a continued requirement names the line where it starts."""
    text = "requests\n\nbad \\\n  name here\n"
    assert f"{REQS} line 3 " in _error(text)


def test_hash_options_on_a_line() -> None:
    """--hash options after a requirement, also on continuation lines and after any
    run of spaces (as pip and uv take them), are accepted."""
    text = (
        "requests==2.32.3 --hash=sha256:aaaa --hash sha256:bbbb\n"
        "attrs==23.2.0 \\\n"
        "    --hash=sha256:cccc \\\n"
        "    --hash=sha256:dddd\n"
        "wheel==0.43 --hash  sha256:eeee --hash \\\n    sha256:ffff\n"
    )
    reqs = _parse(text)
    assert reqs.names == ("requests", "attrs", "wheel")
    assert [e.hashes for e in reqs.entries] == [
        ("sha256:aaaa", "sha256:bbbb"),
        ("sha256:cccc", "sha256:dddd"),
        ("sha256:eeee", "sha256:ffff"),
    ]


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("wheel==0.43 --config-settings=x=y", "--config-settings"),
        ("wheel==0.43 --global-option=--quiet", "--global-option"),
        ("foo==1.0 -C editable_mode=compat", "-C"),
        ("lib @ git+ssh://git@h/lib.git@v1 -Ca=b", "-C"),
    ],
)
def test_build_options_for_one_requirement_are_refused(line: str, option: str) -> None:
    """uv refuses a build option after a requirement ("Trailing -C a=b is not
    allowed"): said before the build, in one line."""
    assert _error(line + "\n").startswith(f"{REQS} line 1 gives {option} to one requirement")


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        (
            "--find-links https://w.example/ --only-binary :all:",
            "has several options on one line (--find-links, --only-binary), which uv reads as one",
        ),
        ("-i https://a/s --extra-index-url https://b/s", "has several options on one line"),
        ("-fhttps://w.example/", "writes the value onto -f, which uv does not take"),
        ("-ihttps://o/s", "put a space between them: -i https://o/s"),
        ("--index https://o/s", "shortens --index-url to --index, which uv does not take"),
        ("--extra https://o/s", "write --extra-index-url in full"),
    ],
)
def test_option_lines_uv_would_misread_are_refused(line: str, phrase: str) -> None:
    """pip's optparse reads these; uv, which installs the build and resolves the
    lock, takes the rest of the line as one URL or stops: each is refused."""
    message = _error(f"{line}\nsix\n")
    assert message.startswith(f"{REQS} line 1 ")
    assert phrase in message


def test_option_lines_uv_reads_alike_are_taken() -> None:
    """One option per line, spelled out or short with a space, "=" or quotes."""
    text = (
        "-i https://a.example/simple\n--extra-index-url='https://b.example/simple'\n"
        "--find-links https://w.example/\n--only-binary :all:\nsix\n"
    )
    assert len(_parse(text).options) == 4


def test_environment_markers() -> None:
    """Requirements with environment markers parse, URL ones still give their host."""
    text = (
        'tomli>=2; python_version < "3.11"\n'
        'mylib @ git+ssh://git@git.example.com:2200/org/mylib.git ; sys_platform == "linux"\n'
    )
    reqs = _parse(text)
    assert reqs.names == ("tomli", "mylib")
    assert reqs.ssh_hosts == (SSHHost("git.example.com", 2200),)


def test_bare_url_with_egg() -> None:
    """A bare URL names its package with #egg=, and its host is collected."""
    reqs = _parse("git+ssh://git@git.example.com:2222/org/mylib.git@v3#egg=mylib\n")
    assert reqs.names == ("mylib",)
    assert reqs.private == ("mylib",)
    assert reqs.ssh_hosts == (SSHHost("git.example.com", 2222),)


def test_bare_url_with_egg_after_other_fragment() -> None:
    """#egg= is also found after another fragment parameter."""
    reqs = _parse("https://files.example.com/lib.zip#sha256=ab&egg=lib\n")
    assert (reqs.names, reqs.private) == (("lib",), ())


def test_bare_url_without_egg_refused() -> None:
    """A bare URL with no package name is refused, naming the line."""
    message = _error("requests\ngit+ssh://git@git.example.com/org/mylib.git\n")
    assert f"{REQS} line 2 is a URL without a package name" in message


def test_allowed_file_options_pass() -> None:
    """Harmless file-level options are accepted and are not requirement names."""
    text = (
        "--index-url https://pypi.example.com/simple\n"
        "-i https://pypi.example.com/simple\n"
        "--extra-index-url=https://mirror.example.com/simple\n"
        "--find-links https://wheels.example.com/\n"
        "-f https://wheels.example.com/more/\n"
        "--no-binary :all:\n"
        "--only-binary=:none:\n"
        "--prefer-binary\n"
        "--pre\n"
        "--trusted-host pypi.example.com\n"
        "requests\n"
    )
    assert _parse(text).names == ("requests",)


# --- refused input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("-r other.txt", "-r"),
        ("-rother.txt", "-r"),  # a short option's value may be attached, as optparse takes it
        ("--pre -r other.txt", "-r"),  # any option of the line, not only the first
        ("--requireme other.txt", "--requireme"),  # a long option's unique prefix
        ("--requirement other.txt", "--requirement"),
        ("--requirement=other.txt", "--requirement"),
        ("-c constraints.txt", "-c"),
        ("--constraint constraints.txt", "--constraint"),
    ],
)
def test_included_files_refused(line: str, option: str) -> None:
    """-r and -c include files the build cannot see, so they are refused."""
    message = _error(f"requests\n{line}\n")
    assert f"{REQS} line 2 includes another file ({option})" in message


@pytest.mark.parametrize(
    "line", ["-e git+ssh://git@git.example.com/org/x.git#egg=x", "--editable ./src"]
)
def test_editable_refused(line: str) -> None:
    """Editable requirements are refused."""
    assert f"{REQS} line 1 is an editable requirement" in _error(line)


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("--user", "--user"),
        ("--install-option=--prefix=/x", "--install-option"),
        ("--hash=sha256:abcd", "--hash"),
        ("--use-feature fast-deps", "--use-feature"),
        ("--index-url-typo https://x", "--index-url-typo"),
        ("-", "-"),
    ],
)
def test_unknown_options_refused(line: str, option: str) -> None:
    """Options this tool does not pass to pip are refused, naming the option."""
    assert f"{REQS} line 1 has the option {option}," in _error(line)


TOKEN = "ghp_0123456789abcdefSECRETtokenVALUE"


@pytest.mark.parametrize(
    "line",
    [
        f"lib @ git+https://user:{TOKEN}@github.com/org/lib.git",
        f"lib @ git+https://{TOKEN}@github.com/org/lib.git",
        f"lib @ https://{TOKEN}@files.example.com/lib-1.0.tar.gz",
        f"lib @ git+ssh://git:{TOKEN}@git.example.com/org/lib.git",
        f"https://__token__:{TOKEN}@files.example.com/lib.zip#egg=lib",
        f"--index-url https://__token__:{TOKEN}@pypi.example.com/simple",
        f"--extra-index-url=https://{TOKEN}@pypi.example.com/simple",
        f"-i HTTPS://x:{TOKEN}@pypi.example.com/simple",
        f"lib @ git+https://user:{TOKEN}@github.com/org/lib.git this is not valid",
        f"# --extra-index-url https://__token__:{TOKEN}@gitlab.example.com/simple",
        f"requests==2.31.0  # was https://{TOKEN}@files.example.com/requests.tar.gz",
        f"lib @ git+https://user:{TOKEN}\\\n@github.com/org/lib.git",
    ],
)
def test_credentials_in_url_refused_without_echo(line: str) -> None:
    """Credentials in a URL are refused and the token never appears in the error."""
    with pytest.raises(RequirementsError) as info:
        _parse(f"requests\n{line}\n")
    err = info.value
    assert f"{REQS} line 2 has credentials in a URL" in str(err)
    for text in (str(err), err.message, err.hint, repr(err), err.line()):
        assert TOKEN not in text


def test_ssh_login_name_is_not_a_credential() -> None:
    """git@ in an SSH URL is the login name and is accepted."""
    reqs = _parse("lib @ git+ssh://deploy@git.example.com/org/lib.git@v1\n")
    assert reqs.ssh_hosts == (SSHHost("git.example.com"),)


def test_https_url_with_tag_is_not_a_credential() -> None:
    """An @ after the path (a git ref) is not mistaken for credentials."""
    reqs = _parse("lib @ git+https://github.com/org/lib.git@v1.2\n")
    assert (reqs.names, reqs.ssh_hosts) == (("lib",), ())


@pytest.mark.parametrize(
    "url",
    ["git+git@github.com:org/lib.git", "git@github.com:org/lib.git@v1", "deploy@git.example:lib"],
)
def test_scp_like_url_refused(url: str) -> None:
    """git's scp-like form, with "git+" or without (which uv takes for a local folder
    and which would fetch with no host pinned), is refused with the form to use."""
    message = _error(f"lib @ {url}\n")
    assert f"{REQS} line 1 uses git's scp-like form" in message
    assert "git+ssh://git@HOST/PATH.git@TAG" in message


@pytest.mark.parametrize(
    ("text", "line", "code"),
    [
        ("foo==1.0\u00a0# pinned, see https://example.com/issue/1\nbar==1.0\n", 1, "00A0"),
        ("foo\nbar==1.0\u2028baz\n", 2, "2028"),
        ("foo\rbar\n", 1, "000D"),
        ("foo\n\u3000# wide space\n", 2, "3000"),
    ],
)
def test_spacing_pip_and_the_build_read_apart_is_refused(text: str, line: int, code: str) -> None:
    """A no-break space before "#" makes a comment for pip, not for the build's
    line reader, which took the line for a URL line and installed foo nowhere;
    any space or line break beyond space, tab and newline is refused."""
    message = _error(text)
    assert message.startswith(f"{REQS} line {line} has the character U+{code},")


def test_windows_line_ends_are_plain_line_ends() -> None:
    """CRLF files read as they always did."""
    assert _parse("foo==1.0\r\n# c\r\nbar\r\n").names == ("foo", "bar")


def test_scp_like_bare_url_refused() -> None:
    """A bare scp-like URL is refused too."""
    with pytest.raises(RequirementsError, match="line 1 "):
        _parse("git+git@github.com:org/lib.git#egg=lib\n")


@pytest.mark.parametrize(
    "url",
    [
        "git+ssh://git@git.example.com:99999/lib.git",
        "git+ssh://git@git.example.com:0/lib.git",
        "git+ssh://git@git.example.com:port/lib.git",
        "git+ssh:///org/lib.git",
        "git+ssh://git@[::1/lib.git",
        "git+ssh://git@[not-an-ip]/lib.git",
    ],
)
def test_invalid_ssh_host_or_port_refused(url: str) -> None:
    """SSH URLs without a usable host or port give a RequirementsError naming the line."""
    assert f"{REQS} line 1 has an SSH URL without a valid host or port" in _error(f"lib @ {url}")
    bare = _error(f"{url}#egg=lib")
    assert f"{REQS} line 1 has an SSH URL without a valid host or port" in bare


@pytest.mark.parametrize(
    "line",
    ["requests ==", "lib @", "[extra]", "lib[", "lib @ git+ssh://git@host/x.git; bogus_marker"],
)
def test_malformed_line_names_file_and_line(line: str) -> None:
    """An invalid requirement gives the file, line number and the parser's reason."""
    message = _error(f"# header\nrequests\n\n{line}\n")
    assert f"{REQS} line 4 is not a valid requirement (" in message
    assert "write NAME[==VERSION]" in message


@pytest.mark.parametrize(
    "text", ["", "\n\n", "# only a comment\n", "  \n# a\n\t\n", "\\\n", "# a \\\n# b \\\n"]
)
def test_empty_file_refused(text: str) -> None:
    """A file without any requirement is refused."""
    assert f"requirements file {REQS} lists no requirement" in _error(text)


def test_options_only_file_refused() -> None:
    """A file with only options and no requirement is refused."""
    assert "lists no requirement" in _error("--index-url https://pypi.example.com/simple\n")


@pytest.mark.parametrize(
    "line",
    [
        "lib @ git+ssh://git@host/x y.git",
        "lib @ git+ssh://git@ho st/x.git",
        "two words",
        "'requests'",
        '"requests"',
        "requests; os_name == '$(id)'",
        "$(touch pwned)",
        "`id`",
        "requests; rm -rf /",
        "requests && curl evil",
        "paquet-é",
        "пакет",
        "lib @ git+ssh://git@gít.example.com/x.git",
        "lib @ git+ssh://git@host/$(id).git",
        "lib @ git+ssh://git@host/x.git;echo",
        "${HOME}",
        "requests\x00",
        "lib @ git+ssh://git@host\\x/y.git",
    ],
)
def test_hostile_lines_parse_or_raise_requirements_error(line: str) -> None:
    """Hostile lines either parse or give RequirementsError naming the line, nothing else."""
    outcome = _outcome(line)
    if isinstance(outcome, RequirementsError):
        assert f"{REQS} line 1 " in str(outcome)
    else:
        assert len(outcome.names) == 1


# --- reading files --------------------------------------------------------------------


def test_read_requirements_from_file(tmp_path: Path) -> None:
    """read_requirements parses the file and keeps its path."""
    path = tmp_path / "requirements.txt"
    path.write_text("lib @ git+ssh://git@127.0.0.1:2222/lib.git\n", encoding="utf-8")
    reqs = read_requirements(path)
    url = "git+ssh://git@127.0.0.1:2222/lib.git"
    assert reqs == Requirements(
        path,
        ("lib",),
        ("lib",),
        (SSHHost("127.0.0.1", 2222),),
        (Entry(1, "lib", url, "", ()),),
        options=(),
        url_lines=(f"lib @ {url}",),
    )


def test_entries_keep_pins_and_hashes() -> None:
    """Entries carry each line's version pin, hashes and commit pin, as a lock needs."""
    sha = "a" * 40
    reqs = _parse(
        "wheel==0.48.0 \\\n    --hash=sha256:00ff \\\n    --hash=sha256:11ee\n"
        f"privpkg @ git+ssh://git@h/p.git@{sha}\n"
        "loose>=1\n"
    )
    wheel, private, loose = reqs.entries
    assert (wheel.name, wheel.specifier, wheel.hashes) == (
        "wheel",
        "==0.48.0",
        ("sha256:00ff", "sha256:11ee"),
    )
    assert wheel.pinned_version
    assert not wheel.pinned_commit
    assert private.pinned_commit
    assert private.hashes == ()
    assert not loose.pinned_version
    assert _parse("p @ git+ssh://git@h/p.git@v1.0.0\n").entries[0].pinned_commit is False


def test_read_requirements_error_names_real_path(tmp_path: Path) -> None:
    """Errors from a read file name that file."""
    path = tmp_path / "requirements.txt"
    path.write_text("requests\n-r base.txt\n", encoding="utf-8")
    with pytest.raises(RequirementsError, match=re.escape(f"{path} line 2 includes another file")):
        read_requirements(path)


def test_missing_file_refused(tmp_path: Path) -> None:
    """A missing requirements file gives a RequirementsError naming it."""
    path = tmp_path / "nope.txt"
    with pytest.raises(RequirementsError) as info:
        read_requirements(path)
    assert f"requirements file {path} does not exist" in str(info.value)


def test_non_utf8_file_refused(tmp_path: Path) -> None:
    """A file that is not UTF-8 gives a RequirementsError, not a UnicodeDecodeError."""
    path = tmp_path / "requirements.txt"
    path.write_bytes(b"requests\n\xff\xfe\n")
    with pytest.raises(RequirementsError, match="cannot read requirements file"):
        read_requirements(path)


def test_directory_refused(tmp_path: Path) -> None:
    """A directory in place of the file gives a RequirementsError, not an OSError."""
    with pytest.raises(RequirementsError) as info:
        read_requirements(tmp_path)
    assert f"cannot read requirements file {tmp_path}: IsADirectoryError" in str(info.value)


# --- property -------------------------------------------------------------------------

# Requirement-shaped lines built from pieces of the syntax (with some random text), so
# generated input reaches the URL, host and port code, not only the first parse error.
_LINE = st.tuples(
    st.sampled_from(["", "lib", "Lib_2[extra]", "lib==1.0", "-e ", "-r ", "--index-url ", "#"]),
    st.sampled_from(["", " @ ", "@"]),
    st.sampled_from(["", "git+ssh://", "ssh://", "git+https://", "https://", "git+git@"]),
    st.sampled_from(["", "git@", "user:pw@", "tok@", "@"]),
    st.one_of(
        st.sampled_from(["host.example", "HOST", "[::1]", "[", "[zz]", "[::1", "gít", ""]),
        st.text(max_size=6),
    ),
    st.sampled_from(["", ":", ":22", ":2222", ":0", ":65536", ":99999", ":x", ":-1"]),
    st.sampled_from(["", "/org/lib.git", "/x y", "/lib.git@v1", "/$(id)"]),
    st.sampled_from(
        ["", "#egg=lib", "&egg=x", " # c", " --hash=sha256:ab", " ; python_version<'3'", ";"]
    ),
    st.sampled_from(["", " \\", "\\", "\r", "\u2028", "\x00", "é", "'", '"']),
).map("".join)


@settings(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_only_parses_or_raises_requirements_error(text: str) -> None:
    """parse_requirements on any text returns Requirements or raises RequirementsError."""
    outcome = _outcome(text)
    assert isinstance(outcome, (Requirements, RequirementsError))


@settings(database=None, deadline=None, max_examples=1000)
@given(st.lists(_LINE, max_size=5).map("\n".join))
def test_requirement_shaped_text_only_parses_or_raises_requirements_error(text: str) -> None:
    """Text built from requirement syntax also only parses or raises RequirementsError."""
    outcome = _outcome(text)
    if isinstance(outcome, RequirementsError):
        assert str(REQS) in str(outcome)
        return
    assert outcome.names
    assert set(outcome.private) <= set(outcome.names)
    assert all(host.host and 0 < host.port < 65536 for host in outcome.ssh_hosts)


@pytest.mark.parametrize("scheme", ["hg+ssh", "svn+ssh", "bzr+ssh"])
def test_other_vcs_over_ssh_refused(scheme: str) -> None:
    """Non-git VCS over SSH is refused: the build pins host keys for git only."""
    with pytest.raises(RequirementsError, match="pinned host keys do not cover"):
        _parse(f"lib @ {scheme}://h.example/lib\n")


@pytest.mark.parametrize("host", ["-oProxyCommand=id", "h;id", "h$(id)"])
def test_option_like_or_odd_host_names_refused(host: str) -> None:
    """A host name that ssh could read as an option, or that is no host name, is refused."""
    with pytest.raises(RequirementsError, match="without a valid host"):
        _parse(f"lib @ git+ssh://git@{host}/x.git@v1\n")


# --- the template's two install steps -------------------------------------------

MIXED = """\
# private code first; a URL in a comment is no URL line: https://example.com
--index-url https://index.example/simple
privpkg @ git+ssh://git@127.0.0.1:2222/org/privpkg.git@v1.0.0#subdirectory=src
requests  # http://a.comment/too
numpy==1.26.4 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via -r requirements.in
git+ssh://git@127.0.0.1:2222/org/other.git@v2#egg=otherpkg
wheelpkg @ https://files.example/wheelpkg-1.0-py3-none-any.whl --hash=sha256:cccc
--extra-index-url=https://more.example/simple

six>=1.16; python_version >= "3.8"
"""


def test_url_requirements_are_the_options_then_the_url_lines() -> None:
    """What the first, SSH step installs: every URL line whole, with the file's options."""
    assert _parse(MIXED).url_requirements.splitlines() == [
        "--index-url https://index.example/simple",
        "--extra-index-url=https://more.example/simple",
        "privpkg @ git+ssh://git@127.0.0.1:2222/org/privpkg.git@v1.0.0#subdirectory=src",
        "git+ssh://git@127.0.0.1:2222/org/other.git@v2#egg=otherpkg",
        "wheelpkg @ https://files.example/wheelpkg-1.0-py3-none-any.whl --hash=sha256:cccc",
    ]


def test_no_url_line_means_no_first_step() -> None:
    """Index packages only: the SSH step installs nothing (options alone are no requirement)."""
    assert _parse("--index-url https://i.example/simple\nrequests\n").url_requirements == ""


#: Files pip reads in ways a naive reader does not.
AWKWARD = [
    # The last line continues into the end of the file.
    "requests==2.31.0\nsix==1.16.0 \\",
    "requests==2.31.0\nsix==1.16.0 \\\n",
    # Windows line ends, with a URL continued onto the next line.
    "lib @ \\\r\n    git+ssh://git@h/org/lib.git@v1\r\nrequests==2.31.0\r\n",
    # A byte order mark before an option line.
    "\ufeff--index-url https://i.example/simple\nrequests\n",
    # A comment line ends a continuation (pip joins it with a space).
    "foo==1.0\\\n# a comment\nbar==2.0\n",
    # A hash after a continuation, and after two spaces.
    "foo==1.0 \\\n    --hash  sha256:aaaa\nlib @ git+ssh://git@h/lib.git@v1\n",
]


@pytest.mark.parametrize(
    ("text", "names"),
    list(
        zip(
            AWKWARD,
            [
                ["requests", "six"],
                ["requests", "six"],
                ["lib", "requests"],
                ["requests"],
                ["foo", "bar"],
                ["foo", "lib"],
            ],
            strict=True,
        )
    ),
)
def test_awkward_files_are_read_as_pip_reads_them(text: str, names: list[str]) -> None:
    """The names pip's own parser finds in each awkward file (pip 23.2)."""
    assert list(_parse(text).names) == names


@pytest.mark.parametrize("text", [MIXED, "requests\n", "a @ git+ssh://git@h/a.git@v1\n", *AWKWARD])
def test_the_two_steps_install_every_requirement_once(
    text: str, tmp_path: Path, awk: tuple[str, ...]
) -> None:
    """The template's filter and the tool's split agree: each requirement in exactly one
    step, the file's options in both, hashes kept with their requirement."""
    import subprocess

    from securebuild_tasks.build import template_path
    from tests.support.dockerfile import index_filter

    path = tmp_path / "requirements.txt"
    path.write_text(text)
    second = subprocess.run(
        [*awk, index_filter(template_path().read_text()), str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    whole = _parse(text)
    first = whole.url_requirements
    first_names = _parse(first).names if first else ()
    second_lines = [line for line in second.splitlines() if not line.startswith("-")]
    second_entries = _parse(second).entries if second_lines else ()
    second_names = tuple(e.name for e in second_entries)
    assert sorted(first_names + second_names) == sorted(whole.names)
    assert set(first_names).isdisjoint(second_names)
    options = [line for line in second.splitlines() if line.startswith("-")]
    assert options == list(whole.options)
    assert [e.hashes for e in second_entries] == [e.hashes for e in whole.entries if not e.url]


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (f"six==1.16.0 --hash=sha256:{'a' * 64}\nwheel\n", "line 2 (wheel)"),
        (f"six==1.16.0 --hash=sha256:{'a' * 64}\nwheel==0.45.1\n", "line 2 (wheel)"),
        (f"six>=1 --hash=sha256:{'a' * 64}\n", "line 1 (six)"),
        (
            f"lib @ https://files.example.com/lib-1.0.tar.gz --hash=sha256:{'a' * 64}\nsix\n",
            "line 2 (six)",
        ),
        (f"six==1.16.0 --hash=sha256:{'a' * 64}\nwheel==0.45.1 --hash=sha256:{'b' * 64}\n", ""),
        ("lib @ git+ssh://git@git.example.com/org/lib.git@v1\nsix\n", ""),
    ],
)
def test_hashes_are_all_or_nothing(text: str, refused: str) -> None:
    """Once any line has a hash, every index requirement needs == and a hash."""
    parsed = _parse(text)
    if not refused:
        check_hash_mode(parsed)
        return
    with pytest.raises(RequirementsError) as info:
        check_hash_mode(parsed)
    assert f"requirements.txt {refused}" in str(info.value)
    assert "lacks an exact version with sha256 hashes" in str(info.value)


@pytest.mark.parametrize(
    "line",
    [
        f"lib @ https://files.example.com/lib-1.0.tar.gz?token={TOKEN}",
        f"lib @ https://gitlab.example.com/api/lib.tar.gz?ref=v1&private_token={TOKEN}",
        f"lib @ https://bucket.s3.example.com/lib.whl?X-Amz-Signature={TOKEN}&X-Amz-Date=1",
        f"--extra-index-url https://pypi.example.com/simple?access_key={TOKEN}",
        f"six  # mirror: https://files.example.com/six.tar.gz?sig={TOKEN}",
    ],
)
def test_tokens_in_a_url_query_refused_without_echo(line: str) -> None:
    """A URL whose query holds a token (signed URLs, ?private_token=) is refused: the
    file is copied into the build, and its URL lines are build args."""
    with pytest.raises(RequirementsError) as info:
        _parse(f"requests\n{line}\n")
    err = info.value
    assert f"{REQS} line 2 has a URL whose query looks like a token" in str(err)
    for text in (str(err), err.message, err.hint, repr(err), err.line()):
        assert TOKEN not in text


def test_a_harmless_query_is_kept() -> None:
    """A query that holds no token (a ref, an author, a design) is a URL like any."""
    reqs = _parse(
        "lib @ https://files.example.com/lib.tar.gz?ref=v1.2&sha=abc\n"
        "# see https://issues.example.com/list?author=me&assignee=you\n"
        "web @ https://files.example.com/web.whl?design=2\n"
    )
    assert reqs.names == ("lib", "web")


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("--find-links ./wheels", "--find-links"),
        ("-f wheels", "-f"),
        ("--find-links=wheels/linux", "--find-links"),
        ("-f", "-f"),
        ("--pre -f./wheels", "-f"),  # a later option, its value attached
    ],
)
def test_find_links_to_a_local_folder_refused(line: str, option: str) -> None:
    """--find-links at a folder: only the requirements file reaches the build, so
    the folder is not there; said before the build, not by pip inside it."""
    message = _error(f"{line}\nsix\n")
    assert f"{REQS} line 1 points {option} at a folder" in message
    assert "inv vendor" in message
    assert _parse("--find-links https://wheels.example.com/\nsix\n").names == ("six",)
    # An absolute path may be a folder inside the image of a Dockerfile of one's own.
    assert _parse("--find-links /opt/wheels\nsix\n").names == ("six",)


@pytest.mark.parametrize(
    "line",
    [
        "x @ git+https://[fd00::1]/acme/x.git@v1.0",
        "x @ git+https://[fd00::1]:8443/acme/x.git@v1.0",
        "x @ https://files.example.com:8443/x-1.0.tar.gz#egg=x",
    ],
)
def test_ipv6_hosts_and_ports_are_no_credentials(line: str) -> None:
    assert _parse(line + "\n").names == ("x",)


@pytest.mark.parametrize(
    "text",
    [
        "# D\u00e9pendances\u00a0: prod\nrequests==2.32.3\n",
        "requests==2.32.3  # pinned\u00a0here\n",
        "requests==2.32.3\t# \u3000wide\n",
    ],
)
def test_odd_spaces_inside_a_comment_both_readers_see_are_taken(text: str) -> None:
    """Past a "#" that pip and the build both take for a comment, any space is the
    comment's own."""
    assert _parse(text).names == ("requests",)


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "no-such-codec"])
def test_a_coding_line_that_is_not_utf8_is_refused(encoding: str) -> None:
    """pip decodes a file in the encoding its first lines declare: in Latin-1 the
    byte 0x85 inside a UTF-8 letter of a comment is a line break, and the line
    after it a requirement only pip sees."""
    text = f"# -*- coding: {encoding} -*-\nrequests==2.32.3  # \u00c5 note\n"
    assert _error(text).startswith(f"{REQS} line 1 declares the encoding {encoding!r}")
    assert _parse("# -*- coding: utf-8 -*-\nrequests==2.32.3\n").names == ("requests",)


@pytest.mark.parametrize(
    "text", ["six==1.0\u00a0\n", "\u3000\nsix\n", "six==1.0\u00a0 \t\n", "six==1.0\t\u2003\n"]
)
def test_trailing_spaces_of_any_kind_are_taken(text: str) -> None:
    """Both readers strip a line's trailing spaces, whatever their kind."""
    assert _parse(text).names == ("six",)
