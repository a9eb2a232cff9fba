"""INDEX_CONFIG: where packages come from reaches the cache keys; credentials do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from securebuild_tasks.build import index_config
from securebuild_tasks.errors import SettingsError

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
