"""INDEX_CONFIG: where packages come from reaches the cache keys; credentials do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from securebuild_tasks.build import index_config, pip_sources
from securebuild_tasks.errors import SettingsError
from securebuild_tasks.requirements import parse_requirements
from securebuild_tasks.settings import Settings

TOKEN = "ghp_0123456789abcdefSECRETtokenVALUE"


def _files(folder: Path, **texts: str) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    found = {}
    for name, text in texts.items():
        path = folder / name
        path.write_text(text)
        found[name] = path
    return found


def _pip(url: str, find_links: str = "https://files.example.com/wheels/") -> str:
    return f"[global]\nindex-url = {url}\nfind-links = {find_links}\ntimeout = 30\n"


def test_no_index_files_no_digest(tmp_path: Path) -> None:
    """Nothing configured: the arg stays empty, as the template's default."""
    assert index_config({}) == ""
    assert index_config(_files(tmp_path, netrc=f"machine h login u password {TOKEN}\n")) == ""


def test_credentials_change_nothing(tmp_path: Path) -> None:
    """A rotated token (in a URL's user info or query, or in the .netrc) keeps the digest."""
    one = index_config(
        _files(
            tmp_path / "a",
            pip_config=_pip(f"https://__token__:{TOKEN}@pypi.example.com/simple"),
            uv_config=f'[[index]]\nurl = "https://u:{TOKEN}@uv.example.com/simple?token={TOKEN}"\n',
            netrc=f"machine pypi.example.com login u password {TOKEN}\n",
        )
    )
    two = index_config(
        _files(
            tmp_path / "b",
            pip_config=_pip("https://__token__:rotated@pypi.example.com/simple"),
            uv_config='[[index]]\nurl = "https://u:rotated@uv.example.com/simple?token=rotated"\n',
            netrc="machine pypi.example.com login u password rotated\n",
        )
    )
    assert one == two != ""
    assert TOKEN not in one


@pytest.mark.parametrize(
    ("setting", "before", "after"),
    [
        (
            "pip_config",
            _pip("https://pypi.example.com/simple"),
            _pip("https://other.example.com/simple"),
        ),
        (
            "pip_config",
            _pip("https://p.example.com/simple"),
            _pip("https://p.example.com:8443/simple"),
        ),
        (
            "pip_config",
            _pip("https://p.example.com/simple"),
            _pip("https://p.example.com/simple", "https://files.example.com/other/"),
        ),
        (
            "uv_config",
            'index-url = "https://a.example.com/simple"\n',
            'index-url = "https://b.example.com/simple"\n',
        ),
        ("ca_bundle", "-----BEGIN CERTIFICATE-----\nAAAA\n", "-----BEGIN CERTIFICATE-----\nBBBB\n"),
    ],
)
def test_another_index_or_ca_changes_the_digest(
    tmp_path: Path, setting: str, before: str, after: str
) -> None:
    """Another index, port, find-links folder, uv index or CA: another cache key."""
    assert index_config(_files(tmp_path / "a", **{setting: before})) != index_config(
        _files(tmp_path / "b", **{setting: after})
    )


def test_unreadable_uv_config_is_one_line_without_its_text(tmp_path: Path) -> None:
    """A uv config that is not TOML is refused before the build, its content unquoted."""
    files = _files(tmp_path, uv_config=f"[[index]]\nurl = https://u:{TOKEN}@uv.example.com/\n")
    with pytest.raises(SettingsError, match=r"cannot be read as TOML: .*line 2") as info:
        index_config(files)
    assert TOKEN not in str(info.value)
    assert "\n" not in info.value.line()


@pytest.mark.parametrize(
    ("file", "pip_conf", "index_url", "sources"),
    [
        ("six\n", "", "", ["https://pypi.org/simple"]),
        (
            "--extra-index-url https://pkgs.corp.example/simple/\nsix\n",
            "",
            "",
            ["https://pypi.org/simple", "https://pkgs.corp.example/simple"],
        ),
        (
            "six\n",
            f"[global]\nindex-url = https://__token__:{TOKEN}@pkgs.corp.example/simple\n",
            "",
            ["https://pkgs.corp.example/simple"],
        ),
        (
            "six\n",
            "[install]\nextra-index-url = https://a.example/simple\n  https://b.example/simple\n",
            "https://pkgs.corp.example/simple",
            [
                "https://pkgs.corp.example/simple",
                "https://a.example/simple",
                "https://b.example/simple",
            ],
        ),
        (
            "--find-links=https://wheels.example/\nsix\n",
            "[global]\nno-index = true\nfind-links = https://wheels.example\n",
            "",
            ["https://wheels.example"],
        ),
        (  # a quoted value, as pip reads it
            "-i https://a.example/simple\n--extra-index-url 'https://B.Example/simple/'\nsix\n",
            "",
            "",
            ["https://a.example/simple", "https://b.example/simple"],
        ),
        (  # the file's index replaces the config's index and its extra indexes
            "--index-url https://a.example/simple\nsix\n",
            "[global]\nindex-url = https://b.example/simple\n"
            "extra-index-url = https://c.example/simple\n",
            "",
            ["https://a.example/simple"],
        ),
        (  # a flag beside options with values
            "--pre\n-f https://links.example/\n--extra-index-url https://b.example/simple\nsix\n",
            "",
            "",
            ["https://pypi.org/simple", "https://b.example/simple", "https://links.example"],
        ),
        (  # an empty index is no index, as pip takes it: the config's stand
            "--index-url=\nsix\n",
            "[global]\nextra-index-url = https://c.example/simple\n",
            "",
            ["https://pypi.org/simple", "https://c.example/simple"],
        ),
        (
            "-i https://one.example/simple#main\n-f https://wheels.example/\nsix\n",
            "[global]\nindex-url = https://other.example/simple\n",
            "",
            ["https://one.example/simple", "https://wheels.example"],
        ),
    ],
)
def test_where_pip_takes_packages_from(
    tmp_path: Path, file: str, pip_conf: str, index_url: str, sources: list[str]
) -> None:
    """The index (the file's, index_url, the config's, else PyPI) unless no-index,
    extra indexes and find-links, from the file and the pip config, each once,
    without credentials."""
    requirements = parse_requirements(file, tmp_path / "requirements.txt")
    secrets = _files(tmp_path, pip_config=pip_conf) if pip_conf else {}
    assert pip_sources(requirements, secrets, index_url) == sources


@pytest.mark.parametrize("task", ["vendor", "build-image"])
def test_pip_is_not_left_to_choose_among_indexes_by_version(tmp_path: Path, task: str) -> None:
    """An unhashed pip install from an index and an extra one would take a
    same-named package with a higher version from either (dependency
    confusion): refused for `vendor` (pip builds the wheels) and for a build
    with installer=pip; a hashed file, or uv, installs."""
    from securebuild_tasks.build import plan_build, plan_vendor

    two = "--extra-index-url https://pkgs.corp.example/simple\nsix==1.16.0\n"
    hashed = (
        "--extra-index-url https://pkgs.corp.example/simple\n"
        f"six==1.16.0 --hash=sha256:{'a' * 64}\n"
    )

    def plan(text: str, **settings: str) -> object:
        (tmp_path / "requirements.txt").write_text(text)
        chosen = Settings(**settings)  # type: ignore[arg-type]
        if task == "vendor":
            return plan_vendor(chosen, tmp_path, tmp_path / "out")
        return plan_build(chosen, tmp_path)

    with pytest.raises(SettingsError) as refused:
        plan(two, installer="pip")
    assert refused.value.message == (
        f"{task} would have pip take each package from 2 places (https://pypi.org,"
        " https://pkgs.corp.example) by version alone, so a package of the same name"
        " with a higher version on any of them would be installed instead"
    )
    assert "inv lock" in refused.value.hint
    assert plan(hashed, installer="pip") is not None
    assert plan("six==1.16.0\n", installer="pip") is not None
    if task == "build-image":
        assert plan(two, installer="auto") is not None  # uv: the first index that has it


def test_the_refusal_names_hosts_and_no_credentials(tmp_path: Path) -> None:
    """Where pip would look is named by host: a password holding "@", a token in
    the user info or in the path (as some hosted indexes put it) stays out."""
    from securebuild_tasks.build import plan_vendor

    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("six==1.16.0\n")
    (tmp_path / "pip.conf").write_text(
        f"[global]\nindex-url = https://u:p@ss{TOKEN}@priv.example/simple\n"
        f"extra-index-url = https://dl.cloudsmith.example/{TOKEN}/acme/python/simple/\n"
    )
    settings = Settings(pip_config=str(tmp_path / "pip.conf"))
    with pytest.raises(SettingsError) as refused:
        plan_vendor(settings, project, project / "out")
    line = refused.value.line()
    assert "from 2 places (https://priv.example, https://dl.cloudsmith.example) by" in line
    assert TOKEN not in line
    assert "p@ss" not in line


@pytest.mark.parametrize(
    ("option", "hint"),
    [
        ("--pre", "pin the pre-release itself (NAME==2.0b1)"),
        ("--prefer-binary", "pin a version that has a wheel"),
    ],
)
def test_options_uv_would_drop_are_refused_where_uv_installs(
    tmp_path: Path, option: str, hint: str
) -> None:
    """uv ignores --pre and --prefer-binary in a file (a warning in the build log):
    the template's build with uv, and `inv lock`, would install other versions
    than pip does from the same file. Refused there; pip, a lock's
    exact pins and a Dockerfile of the user's own take the file as it is."""
    from securebuild_tasks.build import plan_build, plan_lock
    from securebuild_tasks.errors import RequirementsError

    (tmp_path / "requirements.txt").write_text(f"{option}\nsix\n")
    name = option.split()[0]
    for installer in ("auto", "uv"):
        with pytest.raises(RequirementsError) as refused:
            plan_build(Settings(installer=installer), tmp_path)
        assert refused.value.line().startswith(
            f"requirements.txt has {name}, which uv ignores, and uv installs the build"
            f" (installer={installer}): {hint}"
        )
    assert plan_build(Settings(installer="pip"), tmp_path) is not None
    (tmp_path / "Dockerfile").write_text("FROM python:3.12-slim\nRUN pip install six\n")
    assert plan_build(Settings(installer="auto"), tmp_path) is not None
    (tmp_path / "Dockerfile").unlink()
    (tmp_path / "requirements.in").write_text(f"{option}\nsix\n")
    with pytest.raises(RequirementsError, match=f"has {name}, which uv ignores, and `inv lock`"):
        plan_lock(Settings(), tmp_path, tmp_path / "out")


def test_trusted_host_changes_no_version_and_is_taken(tmp_path: Path) -> None:
    """uv ignores --trusted-host too, but it picks no other version: plain http
    works without it, and an untrusted certificate fails the build aloud."""
    from securebuild_tasks.build import plan_build

    (tmp_path / "requirements.txt").write_text("--trusted-host 127.0.0.1\nsix\n")
    assert plan_build(Settings(installer="auto"), tmp_path) is not None
