"""lockfile: the lock header, and the pip config's index settings carried over to uv."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from securebuild_tasks.build import _write_atomically, requirements_for
from securebuild_tasks.errors import RequirementsError, SettingsError
from securebuild_tasks.lockfile import (
    build_constraints,
    check,
    check_wheelhouse,
    find_input,
    finish,
    requirements_digest,
    source_of,
    uv_config_from_pip,
    write_manifest,
)
from securebuild_tasks.requirements import parse_requirements
from securebuild_tasks.settings import Settings

TOKEN = "ghp_0123456789abcdefSECRETtokenVALUE"


def _translate(tmp_path: Path, text: str | bytes) -> str:
    conf = tmp_path / "pip.conf"
    if isinstance(text, bytes):
        conf.write_bytes(text)
    else:
        conf.write_text(text)
    return uv_config_from_pip(conf)


def test_index_settings_become_uv_toml(tmp_path: Path) -> None:
    """index-url, extra-index-url (several), find-links and no-index reach uv; the rest does not."""
    translated = _translate(
        tmp_path,
        "[global]\n"
        f"index-url = https://__token__:{TOKEN}@pypi.example.com/simple\n"
        "timeout = 60\n"
        "[install]\n"
        "extra-index-url =\n"
        "    https://a.example.com/simple\n"
        "    https://b.example.com/simple\n"
        "find-links = /wheels\n"
        "no-index = yes\n",
    )
    assert translated.splitlines() == [
        f'index-url = "https://__token__:{TOKEN}@pypi.example.com/simple"',
        'extra-index-url = ["https://a.example.com/simple", "https://b.example.com/simple"]',
        'find-links = ["/wheels"]',
        "no-index = true",
    ]


@pytest.mark.parametrize("key", ["index_url", "INDEX-URL", "--index-url"])
def test_key_names_are_read_as_pip_reads_them(tmp_path: Path, key: str) -> None:
    """pip takes index_url (and any case, and a leading --) for index-url: so must uv's copy,
    or uv would resolve from PyPI what pip takes from the private index."""
    translated = _translate(tmp_path, f"[global]\n{key} = https://pypi.example.com/simple\n")
    assert translated == 'index-url = "https://pypi.example.com/simple"\n'


def test_no_index_settings_give_nothing(tmp_path: Path) -> None:
    """A pip config without index settings makes no uv config."""
    assert _translate(tmp_path, "[global]\ntimeout = 60\n") == ""


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f"index-url = https://bob:{TOKEN}@pypi.example.com/simple\n", "(line 1)"),
        (f"[global]\nindex-url = https://bob:{TOKEN}@x/simple\n{TOKEN}\n", "(line 3)"),
        (f"[global]\nindex-url = https://bob:{TOKEN}@x/simple\n[global]\n", "(line 3)"),
    ],
)
def test_unreadable_pip_config_is_refused_without_its_text(
    tmp_path: Path, text: str, where: str
) -> None:
    """A file pip could not read is refused naming the file and line, never quoting it."""
    with pytest.raises(SettingsError) as raised:
        _translate(tmp_path, text)
    line = raised.value.line()
    assert f"pip_config {tmp_path / 'pip.conf'} cannot be read as a pip config {where}" in line
    assert "[global]" in line  # the hint says what the file should look like
    assert TOKEN not in line
    assert "bob" not in line


def test_pip_config_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are refused without showing them."""
    with pytest.raises(SettingsError, match="is not UTF-8 text") as raised:
        _translate(tmp_path, b"[global]\nindex-url = https://bob:s\xe9cret@x/simple\n")
    assert "xe9" not in raised.value.line()


def test_lock_of_an_input_with_spaces_in_its_name_is_accepted(tmp_path: Path) -> None:
    """The header names the input whole, spaces and all, and a fresh lock checks."""
    source = tmp_path / "reqs prod.in"
    source.write_text("six\n")
    found = find_input(tmp_path, "reqs prod.in")
    lock = tmp_path / "requirements.lock"
    lock.write_text(finish(f"six==1.16.0 \\\n    --hash=sha256:{'a' * 64}\n", found))
    assert check(lock, tmp_path).names == ("six",)
    source.write_text("six\nwheel\n")
    with pytest.raises(RequirementsError, match=r"reqs prod\.in changed since it was locked"):
        check(lock, tmp_path)


ARCHIVE = "https://files.example.com/lib-1.0.tar.gz"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("locked", "refused"),
    [
        (f"lib @ {ARCHIVE} \\\n    --hash=sha256:{'c' * 64}\n", None),
        (f"lib @ git+ssh://git@git.example.com/org/lib.git@{COMMIT}\n", None),
        (f"lib @ {ARCHIVE}\n", "is a URL without sha256 hashes"),
        ("lib @ git+ssh://git@git.example.com/org/lib.git@v1\n", "not pinned to a commit SHA"),
    ],
)
def test_url_lines_of_a_lock_are_pinned_by_commit_or_by_hash(
    tmp_path: Path, locked: str, refused: str | None
) -> None:
    """uv locks an archive URL with its hashes and a git URL at its commit: both are
    pinned; either one without its pin is refused."""
    (tmp_path / "requirements.in").write_text("lib\n")
    lock = tmp_path / "requirements.lock"
    lock.write_text(finish(locked, find_input(tmp_path, "")))
    if refused is None:
        assert check(lock, tmp_path).names == ("lib",)
    else:
        with pytest.raises(RequirementsError, match=refused):
            check(lock, tmp_path)


def test_the_inputs_index_options_are_carried_into_the_lock(tmp_path: Path) -> None:
    """uv leaves index options out of a lock: the input's own come first, so a build
    from the lock looks where the resolution looked."""
    (tmp_path / "requirements.in").write_text(
        "--extra-index-url https://corp.example/simple\nlib\n"
    )
    options = (
        "--extra-index-url https://corp.example/simple",
        "--find-links https://wheels.example/",
    )
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        finish(f"lib==1.0 --hash=sha256:{'d' * 64}\n", find_input(tmp_path, ""), options)
    )
    assert check(lock, tmp_path).options == options
    assert lock.read_text().splitlines()[1:3] == list(options)


def test_unreadable_lock_is_one_error(tmp_path: Path) -> None:
    """A lock that is not UTF-8 is refused with what to do, not a traceback."""
    lock = tmp_path / "requirements.lock"
    lock.write_bytes(b"# securebuild-lock: input=requirements.in sha256=\xff\n")
    with pytest.raises(RequirementsError, match=r"cannot read lock .*UnicodeDecodeError"):
        check(lock, tmp_path)


def test_lock_is_written_into_its_folder_or_refused_in_one_line(tmp_path: Path) -> None:
    """A lock_file in a folder that does not exist yet gets it; one that cannot be
    made is one error, with no partial file left."""
    lock = tmp_path / "locks" / "prod.lock"
    _write_atomically(lock, "pinned\n")
    assert lock.read_text() == "pinned\n"
    assert list(lock.parent.iterdir()) == [lock]
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(SettingsError, match=r"cannot write the lock .*taken/prod\.lock"):
        _write_atomically(tmp_path / "taken" / "prod.lock", "pinned\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locks", "taken"]


def _wheelhouse_of_six(tmp_path: Path) -> tuple[Path, Path]:
    """A wheelhouse holding six's wheel and its hashes file (no manifest yet)."""
    wheelhouse = tmp_path / "vendor"
    wheelhouse.mkdir()
    wheel = wheelhouse / "six-1.16.0-py2.py3-none-any.whl"
    wheel.write_bytes(b"PK six 1.16.0")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (wheelhouse / "requirements.hashes").write_text(
        f"/tmp/wheels/{wheel.name} --hash=sha256:{digest}\n"
    )
    return wheelhouse, wheel


def test_a_wheelhouse_made_from_another_lock_is_refused(tmp_path: Path) -> None:
    """The wheelhouse records the lock it was built from: after `inv lock` moves a pin,
    the old wheels are not installed in silence."""
    wheelhouse, wheel = _wheelhouse_of_six(tmp_path)
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"six==1.16.0 --hash=sha256:{'a' * 64}\n")
    write_manifest(wheelhouse, lock.name, requirements_digest(lock))
    assert [w.file for w in check_wheelhouse(wheelhouse, lock)] == [wheel.name]

    lock.write_text(f"six==1.17.0 --hash=sha256:{'b' * 64}\n")
    with pytest.raises(RequirementsError, match=r"not made from requirements\.lock as it is now"):
        check_wheelhouse(wheelhouse, lock)


PYPROJECT = """\
[project]
name = "shop"
version = "1.0.0"
requires-python = ">=3.11"
dependencies = ["lib>=1"]

[tool.ruff]
line-length = 100
"""


def test_a_pyproject_lock_is_stale_only_when_what_it_resolves_changes(tmp_path: Path) -> None:
    """A new version number or another tool's table leaves a lock made from
    pyproject.toml fresh; a dependency, the Python requirement or uv's table
    does not. A lock made when the whole file was digested still checks."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PYPROJECT)
    lock = tmp_path / "requirements.lock"
    body = f"lib==1.0 --hash=sha256:{'d' * 64}\n"
    lock.write_text(finish(body, find_input(tmp_path, "")))
    pyproject.write_text(
        PYPROJECT.replace('"1.0.0"', '"1.1.0"').replace("100", "120")
        + "[tool.mypy]\nstrict = true\n"
    )
    assert check(lock, tmp_path).names == ("lib",)
    for change in (
        ('["lib>=1"]', '["lib>=1", "other"]'),
        ('">=3.11"', '">=3.12"'),
        ("[tool.ruff]", '[tool.uv]\nindex-url = "https://b.example/simple"\n\n[tool.ruff]'),
    ):
        pyproject.write_text(PYPROJECT.replace(*change))
        with pytest.raises(RequirementsError, match=r"is stale: pyproject\.toml changed"):
            check(lock, tmp_path)
    pyproject.write_text(PYPROJECT)
    whole = hashlib.sha256(PYPROJECT.encode()).hexdigest()
    lock.write_text(f"# securebuild-lock: input=pyproject.toml sha256={whole}\n{body}")
    assert check(lock, tmp_path).names == ("lib",)


def test_uv_sources_over_ssh_are_hosts_to_pin(tmp_path: Path) -> None:
    """A dependency [tool.uv.sources] fetches from git over SSH (as uv does when
    it resolves) names its host, so `lock` pins it and forwards the key; sources
    over https, a path or an index add none."""
    from securebuild_tasks.build import _input_requirements
    from securebuild_tasks.requirements import SSHHost

    (tmp_path / "pyproject.toml").write_text(
        PYPROJECT.replace('["lib>=1"]', '["lib>=1", "core", "web", "local"]')
        + "\n[tool.uv.sources]\n"
        'lib = { git = "ssh://git@git.example.com:2222/org/lib.git", tag = "v1" }\n'
        'core = [{ git = "git+ssh://git@other.example.com/org/core.git",'
        " marker = \"os_name == 'posix'\" }]\n"
        'web = { git = "https://github.com/org/web.git" }\n'
        'local = { path = "../local" }\n'
    )
    requirements = _input_requirements(find_input(tmp_path, "pyproject.toml"))
    assert requirements.ssh_hosts == (
        SSHHost("git.example.com", 2222),
        SSHHost("other.example.com"),
    )


def test_a_pyproject_whose_tool_table_is_no_table(tmp_path: Path) -> None:
    """[tool] uv = "x" (no table) has no sources: the dependencies are read alike."""
    from securebuild_tasks.build import _input_requirements

    (tmp_path / "pyproject.toml").write_text(
        PYPROJECT.replace("[tool.ruff]\nline-length = 100\n", '[tool]\nuv = "x"\n')
    )
    assert _input_requirements(find_input(tmp_path, "pyproject.toml")).names == ("lib",)


@pytest.mark.parametrize(
    ("requirements", "refused"),
    [
        ("requirements.txt", False),  # the default name: the lock serves it
        ("prod.in", False),  # the file the lock was made from
        ("requirements.lock", False),  # the lock itself
        ("./sub/../prod.in", False),
        ("./requirements.txt", False),  # the default name, written another way
        ("link.in", False),  # a link to the lock's input
        ("dev.txt", True),  # another file: it would be left out
    ],
)
def test_a_requirements_file_the_lock_was_not_made_from_is_refused(
    tmp_path: Path, requirements: str, refused: bool
) -> None:
    """Builds install the lock while it exists: a requirements setting naming another
    file is refused in one line rather than silently left out."""
    (tmp_path / "prod.in").write_text("six\n")
    (tmp_path / "dev.txt").write_text("six\npytest\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.in").symlink_to(tmp_path / "prod.in")
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        finish(f"six==1.16.0 --hash=sha256:{'a' * 64}\n", find_input(tmp_path, "prod.in"))
    )
    settings = Settings(requirements=requirements)
    if not refused:
        found, name, locked = requirements_for(settings, tmp_path)
        assert (found.names, name, locked) == (("six",), "requirements.lock", True)
        return
    with pytest.raises(RequirementsError) as raised:
        requirements_for(settings, tmp_path)
    assert raised.value.message == (
        "requirements is dev.txt, but builds install requirements.lock while it exists,"
        " and it was locked from prod.in"
    )
    assert "inv lock --lock-input dev.txt" in raised.value.hint


def test_a_file_that_cannot_be_read_is_one_line_naming_it(tmp_path: Path) -> None:
    """Every file a setting names that cannot be read (a folder, gone) is refused in
    one line that says which file it is, where, and why, with the error kind of
    the task's input."""
    from securebuild_tasks.errors import read_bytes
    from securebuild_tasks.lockfile import requirements_digest

    with pytest.raises(RequirementsError) as folder:
        requirements_digest(tmp_path)
    assert folder.value.line() == (
        f"cannot read requirements file {tmp_path} (Is a directory):"
        " check the file and its permissions"
    )
    with pytest.raises(SettingsError) as gone:
        read_bytes(tmp_path / "ca.pem", "ca_bundle")
    assert (
        gone.value.message
        == f"cannot read ca_bundle {tmp_path / 'ca.pem'} (No such file or directory)"
    )
    assert read_bytes(_write(tmp_path / "ok", b"\x00bytes"), "ca_bundle") == b"\x00bytes"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_lock_line_whose_marker_holds_nowhere_here_needs_no_wheel(tmp_path: Path) -> None:
    """pip, building the wheelhouse in the target image, skips a line whose marker
    does not hold there: the wheelhouse is whole without it. A line without a
    marker is still needed."""
    wheelhouse, wheel = _wheelhouse_of_six(tmp_path)
    source = tmp_path / "requirements.in"
    source.write_text("six\npywin32 ; sys_platform == 'win32'\n")
    lock = tmp_path / "requirements.lock"
    pins = f"six==1.16.0 --hash=sha256:{'a' * 64}\n"
    windows = f'pywin32==306 ; sys_platform == "win32" --hash=sha256:{"b" * 64}\n'
    lock.write_text(finish(pins + windows, find_input(tmp_path, "requirements.in")))
    write_manifest(wheelhouse, lock.name, requirements_digest(lock))
    parsed = check(lock, tmp_path)
    assert [w.file for w in check_wheelhouse(wheelhouse, lock, parsed)] == [wheel.name]

    lock.write_text(finish(pins + windows.split(" ;")[0] + f" --hash=sha256:{'b' * 64}\n",
                           find_input(tmp_path, "requirements.in")))  # fmt: skip
    write_manifest(wheelhouse, lock.name, requirements_digest(lock))
    with pytest.raises(RequirementsError, match="lacks pywin32, which the lock needs"):
        check_wheelhouse(wheelhouse, lock, check(lock, tmp_path))


def test_a_lock_saved_with_a_byte_order_mark_keeps_its_header(tmp_path: Path) -> None:
    """An editor that saves UTF-8 with a BOM does not make the lock "headerless"."""
    (tmp_path / "requirements.in").write_text("six\n")
    found = find_input(tmp_path, "requirements.in")
    lock = tmp_path / "requirements.lock"
    text = finish(f"six==1.16.0 --hash=sha256:{'a' * 64}\n", found)
    lock.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert check(lock, tmp_path).names == ("six",)
    assert source_of(lock) == "requirements.in"


BACKENDS = (
    f"setuptools==80.10.2 \\\n    --hash=sha256:{'e' * 64} \\\n    --hash=sha256:{'f' * 64}\n"
    "    # via -r build-requires.in\n"
    f'wheel==0.48.0 ; python_version >= "3" \\\n    --hash=sha256:{"a" * 64}\n'
    f"flit-core @ https://files.example.com/flit_core-3.9.0-py3-none-any.whl \\\n"
    f"    --hash=sha256:{'b' * 64}\n"
    f"scm @ git+https://git.example.com/scm.git@{COMMIT}\n"
)


def test_the_git_packages_build_requirements_are_locked_as_comment_lines(
    tmp_path: Path,
) -> None:
    """uv's lock of the build requirements goes into the lock, one pin per comment
    line, which pip and uv skip when they install it; the build reads them back
    as a constraints file."""
    (tmp_path / "requirements.in").write_text("lib\n")
    lock = tmp_path / "requirements.lock"
    locked = f"lib @ git+ssh://git@git.example.com/org/lib.git@{COMMIT}\n"
    lock.write_text(finish(locked, find_input(tmp_path, ""), (), BACKENDS))
    assert check(lock, tmp_path).names == ("lib",)
    text = lock.read_text()
    # A build requirement uv could not hash (a git URL) has nothing to be checked against.
    assert text.splitlines()[-3:] == [
        f"#build: setuptools==80.10.2 --hash=sha256:{'e' * 64} --hash=sha256:{'f' * 64}",
        f'#build: wheel==0.48.0 ; python_version >= "3" --hash=sha256:{"a" * 64}',
        "#build: flit-core @ https://files.example.com/flit_core-3.9.0-py3-none-any.whl"
        f" --hash=sha256:{'b' * 64}",
    ]

    def pins(text: str) -> list[tuple[str, str, str, tuple[str, ...], str]]:
        entries = parse_requirements(text, tmp_path / "c.txt").entries
        return [(e.name, e.url, e.specifier, e.hashes, e.marker) for e in entries if e.hashes]

    assert pins(build_constraints(lock)) == pins(BACKENDS)
    # Without build requirements the lock is uv's output and the header alone.
    lock.write_text(finish(locked, find_input(tmp_path, "")))
    assert "#build:" not in lock.read_text()
    assert build_constraints(lock) == ""


@pytest.mark.parametrize(
    "edited",
    [
        "#build: setuptools>=61",
        "#build: setuptools==80.10.2",
        f"#build: setuptools>=61 --hash=sha256:{'e' * 64}",
        f"#build: lib @ git+https://git.example.com/lib.git@{COMMIT}",
        "#build: lib @ https://files.example.com/lib-1.0.tar.gz",
        "#build: not a requirement at all",
    ],
)
def test_a_build_constraint_edited_out_of_its_pin_is_refused(tmp_path: Path, edited: str) -> None:
    (tmp_path / "requirements.in").write_text("lib\n")
    lock = tmp_path / "requirements.lock"
    locked = f"lib @ git+ssh://git@git.example.com/org/lib.git@{COMMIT}\n"
    lock.write_text(finish(locked, find_input(tmp_path, ""), (), BACKENDS) + edited + "\n")
    line = len(lock.read_text().splitlines())
    with pytest.raises(RequirementsError, match=f"line {line} is a build constraint without"):
        check(lock, tmp_path)


def test_a_build_from_the_lock_hands_its_build_constraints_to_the_ssh_step(
    tmp_path: Path,
) -> None:
    """BUILD_CONSTRAINTS: the lock's pins as a constraints file; none without a lock."""
    from securebuild_tasks.build import plan_build

    (tmp_path / "requirements.in").write_text("lib\n")
    (tmp_path / "app").mkdir()
    locked = f"lib @ git+ssh://git@git.example.com/org/lib.git@{COMMIT}\n"
    (tmp_path / "requirements.txt").write_text(locked)
    settings = Settings(known_hosts=str(tmp_path / "known_hosts"))
    (tmp_path / "known_hosts").write_text("git.example.com ssh-ed25519 " + "A" * 68 + "\n")
    unlocked = plan_build(settings, tmp_path)
    assert unlocked.build_args["BUILD_CONSTRAINTS"] == ""
    assert unlocked.warnings == ()
    lock = tmp_path / "requirements.lock"
    lock.write_text(finish(locked, find_input(tmp_path, ""), (), BACKENDS))
    plan = plan_build(settings, tmp_path)
    args = plan.build_args
    assert args["BUILD_CONSTRAINTS"] == build_constraints(lock)
    assert args["BUILD_CONSTRAINTS"].startswith("setuptools==80.10.2 --hash=sha256:eee")
    assert "#build" not in args["URL_REQUIREMENTS"]
    assert plan.warnings == ()


def test_a_build_that_would_not_check_the_locked_backends_says_so(tmp_path: Path) -> None:
    """A lock without pins (older, or its lock step could not make them), pip, or a
    Dockerfile copied from an older template: the build goes on, with a warning."""
    from securebuild_tasks.build import plan_build, template_path

    (tmp_path / "requirements.in").write_text("lib\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "known_hosts").write_text("git.example.com ssh-ed25519 " + "A" * 68 + "\n")
    settings = Settings(known_hosts=str(tmp_path / "known_hosts"))
    locked = f"lib @ git+ssh://git@git.example.com/org/lib.git@{COMMIT}\n"
    lock = tmp_path / "requirements.lock"
    lock.write_text(finish(locked, find_input(tmp_path, "")))
    assert plan_build(settings, tmp_path).warnings == (
        "requirements.lock pins no build backend for its git packages, so the backends that"
        " build them are not hash-checked: run `inv lock` again to pin them",
    )
    lock.write_text(finish(locked, find_input(tmp_path, ""), (), BACKENDS))
    pip = Settings(known_hosts=str(tmp_path / "known_hosts"), installer="pip")
    assert plan_build(pip, tmp_path).warnings[0].startswith("installer=pip: pip cannot check")
    older = template_path().read_text().replace("ARG BUILD_CONSTRAINTS=\n", "")
    (tmp_path / "Dockerfile").write_text(older)
    assert (
        plan_build(settings, tmp_path)
        .warnings[0]
        .startswith(
            "Dockerfile declares no ARG BUILD_CONSTRAINTS, so the build backends requirements.lock"
        )
    )
    # A lock of index packages alone has no backend to check.
    (tmp_path / "Dockerfile").unlink()
    lock.write_text(finish(f"six==1.16.0 --hash=sha256:{'a' * 64}\n", find_input(tmp_path, "")))
    assert plan_build(settings, tmp_path).warnings == ()


def test_a_new_lock_names_what_it_could_not_pin(tmp_path: Path) -> None:
    from securebuild_tasks.build import _unpinned_backends

    git = f"lib @ git+ssh://git@git.example.com/org/lib.git@{COMMIT}\n"
    path = tmp_path / "requirements.lock"
    assert _unpinned_backends("requirements.lock", git, BACKENDS, path) == (
        "requirements.lock cannot pin the build requirements scm of its git packages (they"
        " have no hashes, as a git URL has none): they are not checked"
    )
    assert "pins no build backend" in _unpinned_backends("requirements.lock", git, "", path)
    index = f"six==1.16.0 --hash=sha256:{'a' * 64}\n"
    assert _unpinned_backends("requirements.lock", index, "", path) == ""
