"""Tests for securebuild_tasks.index and the index settings: no token in settings,
messages or a .netrc that mixes up two sets of credentials."""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from securebuild_tasks import index
from securebuild_tasks.errors import KeySourceError, SettingsError
from securebuild_tasks.settings import INDEX_TOKEN_ENV, describe, resolve

TOKEN = "tok-" + "5e" * 20
URL = "https://pypi.example.com:8443/simple/"


@pytest.fixture(autouse=True)
def no_adopted_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no token taken from the environment."""
    monkeypatch.setattr(index, "_taken", {})
    monkeypatch.delenv(INDEX_TOKEN_ENV, raising=False)


def test_token_variable_is_no_setting_and_is_never_shown(tmp_path: Path) -> None:
    """SECUREBUILD_INDEX_TOKEN in the environment is accepted but is no setting."""
    settings = resolve(
        {}, environ={INDEX_TOKEN_ENV: TOKEN, "SECUREBUILD_INDEX_URL": URL}, cwd=tmp_path
    )
    assert settings.index_url == URL
    assert TOKEN not in repr(settings)
    assert all(TOKEN not in value for _, value, _ in describe(settings))


def test_token_in_a_dotenv_file_is_refused(tmp_path: Path) -> None:
    """A token in the project's .env is refused, without echoing it."""
    (tmp_path / ".env").write_text(f"{INDEX_TOKEN_ENV}={TOKEN}\n")
    with pytest.raises(SettingsError) as caught:
        resolve({}, environ={}, cwd=tmp_path)
    assert INDEX_TOKEN_ENV in caught.value.line()
    assert TOKEN not in caught.value.line()


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        (f"https://ci:{TOKEN}@pypi.example.com/simple/", "credentials"),
        (f"https://{TOKEN}@pypi.example.com/simple/", "credentials"),
        (f"https://gitlab.example.com/api/v4/simple/?private_token={TOKEN}", "credentials"),
        (f"https://pkgs.example.com/simple?x=1&sig={TOKEN}", "credentials"),
        # User info a URL parser does not see as such: a "/" in the token, or no "//".
        (f"https://__token__:{TOKEN[:10]}/{TOKEN[10:]}@pypi.example.com/simple/", "credentials"),
        (f"https//deploy:{TOKEN}@pypi.example.com/simple/", "credentials"),
        (f"__token__:{TOKEN}@pypi.example.com/simple/", "credentials"),
        # A token starting with digits then "/", or with a "/" and no user name.
        (f"https://__token__:123/{TOKEN}@pypi.example.com/simple/", "credentials"),
        (f"https://{TOKEN[:10]}/{TOKEN[10:]}@pypi.fury.io/acme/", "credentials"),
        ("ftp://pypi.example.com/simple/", "not an http(s) URL"),
        ("pypi.example.com/simple/", "not an http(s) URL"),
        ("https://pypi.example.com:99999/", "not an http(s) URL"),
    ],
)
def test_bad_index_urls_are_refused(url: str, phrase: str, tmp_path: Path) -> None:
    """An index URL with credentials, or one pip cannot use, stops with one line."""
    with pytest.raises(SettingsError) as caught:
        resolve({}, environ={"SECUREBUILD_INDEX_URL": url}, cwd=tmp_path)
    assert phrase in caught.value.line()
    assert TOKEN[:10] not in caught.value.line()
    assert TOKEN[10:] not in caught.value.line()


def test_env_token_is_taken_out_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Resolving index credentials removes the variable from os.environ (children
    inherit os.environ) and still finds the token afterwards."""
    monkeypatch.setenv(INDEX_TOKEN_ENV, TOKEN)
    settings = resolve({}, environ={"SECUREBUILD_INDEX_URL": URL}, cwd=tmp_path)
    creds = index.index_credentials(settings, tmp_path)
    assert INDEX_TOKEN_ENV not in os.environ
    assert creds is not None
    assert creds.source == "environment"
    path = creds.write_netrc(tmp_path)
    assert path.read_text() == f"machine pypi.example.com login __token__ password {TOKEN}\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_env_token_in_lower_case_is_taken_out_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Settings are read in any case of their variable: so is the token, and no
    spelling of it stays in the environment for a child to inherit."""
    monkeypatch.delenv(INDEX_TOKEN_ENV, raising=False)
    monkeypatch.setenv(INDEX_TOKEN_ENV.lower(), TOKEN)
    settings = resolve({}, environ={"SECUREBUILD_INDEX_URL": URL}, cwd=tmp_path)
    creds = index.index_credentials(settings, tmp_path)
    assert not [name for name in os.environ if name.upper() == INDEX_TOKEN_ENV]
    assert creds is not None
    assert creds.source == "environment"
    assert creds.token() == TOKEN


def test_user_netrc_is_merged_unless_it_names_the_index_host(tmp_path: Path) -> None:
    """Another host's entry is kept; an entry for the index's host is refused."""
    own = tmp_path / "netrc"
    own.write_text("machine git.example.com login me password other")
    environ = {
        "SECUREBUILD_INDEX_URL": URL,
        "SECUREBUILD_NETRC": str(own),
        "SECUREBUILD_INDEX_TOKEN_SOURCE": "environment",
        INDEX_TOKEN_ENV: TOKEN,
    }
    index._taken[INDEX_TOKEN_ENV] = TOKEN
    creds = index.index_credentials(resolve({}, environ=environ, cwd=tmp_path), tmp_path)
    assert creds is not None
    work = tmp_path / "work"
    work.mkdir()
    merged = creds.write_netrc(work).read_text()
    assert merged.splitlines() == [
        "machine git.example.com login me password other",
        f"machine pypi.example.com login __token__ password {TOKEN}",
    ]
    own.write_text("machine pypi.example.com login me password other\n")
    with pytest.raises(SettingsError) as caught:
        creds.check()
    assert "pypi.example.com" in caught.value.line()


def test_missing_or_unusable_tokens_name_the_source_not_the_token(tmp_path: Path) -> None:
    """No variable with index_token_source=environment, or a token a .netrc cannot
    carry: one line naming where the token was looked for."""
    environ = {"SECUREBUILD_INDEX_URL": URL, "SECUREBUILD_INDEX_TOKEN_SOURCE": "environment"}
    creds = index.index_credentials(resolve({}, environ=environ, cwd=tmp_path), tmp_path)
    assert creds is not None
    with pytest.raises(KeySourceError, match=INDEX_TOKEN_ENV):
        creds.check()
    spaced = f"{TOKEN} trailing-word"
    index._taken[INDEX_TOKEN_ENV] = spaced
    with pytest.raises(KeySourceError) as caught:
        creds.check()
    assert "whitespace" in caught.value.line()
    assert TOKEN not in caught.value.line()


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers GET by the server's ``routes`` (path: (status, Location)); records each
    request's path and Authorization header."""

    def do_GET(self) -> None:
        server: Any = self.server
        server.seen.append((self.path, self.headers.get("Authorization")))
        status, location = server.routes.get(self.path, (404, ""))
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def http_servers() -> Iterator[list[Any]]:
    """Two HTTP servers on 127.0.0.1 (the index, and somewhere else), each recording."""
    servers = []
    for _ in range(2):
        server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        server.seen, server.routes = [], {}
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _creds_for(url: str, tmp_path: Path) -> index.IndexCredentials:
    environ = {"SECUREBUILD_INDEX_URL": url, "SECUREBUILD_INDEX_TOKEN_SOURCE": "environment"}
    index._taken[INDEX_TOKEN_ENV] = TOKEN
    creds = index.index_credentials(resolve({}, environ=environ, cwd=tmp_path), tmp_path)
    assert creds is not None
    return creds


def test_token_check_follows_redirects_only_within_the_index(
    http_servers: list[Any], tmp_path: Path
) -> None:
    """The refused-token check sends the token to the index alone: a redirect to the
    same host and port is followed (and its 401 read as a refusal), one elsewhere is not."""
    own, elsewhere = http_servers
    own_url = f"http://127.0.0.1:{own.server_port}"
    own.routes = {"/simple": (301, f"{own_url}/simple/"), "/simple/": (401, "")}
    assert _creds_for(f"{own_url}/simple", tmp_path).refused()
    basic = "Basic " + base64.b64encode(f"__token__:{TOKEN}".encode()).decode()
    assert own.seen == [("/simple", basic), ("/simple/", basic)]

    own.seen.clear()
    other_url = f"http://127.0.0.1:{elsewhere.server_port}"
    own.routes = {"/simple/": (302, f"{other_url}/simple/")}
    elsewhere.routes = {"/simple/": (401, "")}
    assert not _creds_for(f"{own_url}/simple/", tmp_path).refused()
    assert [path for path, _ in own.seen] == ["/simple/"]
    assert elsewhere.seen == []


@pytest.mark.parametrize(
    ("token", "said"),
    [
        ("tok\udcffen-" + "x" * 20, "not UTF-8 text"),
        ("tok\\en-" + "x" * 20, "has a backslash"),
    ],
)
def test_tokens_a_netrc_cannot_carry_are_refused_without_echo(
    tmp_path: Path, token: str, said: str
) -> None:
    """Bytes from the environment that are not UTF-8 (Python keeps them as surrogates),
    or a backslash (an escape to pip's netrc reader, not to uv's): one line, no token."""
    creds = _creds_for("https://pypi.example.com/simple/", tmp_path)
    index._taken[INDEX_TOKEN_ENV] = token
    with pytest.raises(KeySourceError, match=said) as caught:
        creds.check()
    assert "x" * 20 not in caught.value.line()


def test_token_check_against_something_that_is_no_http_server(tmp_path: Path) -> None:
    """An index_url whose port answers with something that is not HTTP: no refusal,
    and no traceback (the build's own error is reported instead)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    threading.Thread(target=answer, daemon=True).start()
    try:
        assert not _creds_for(f"http://127.0.0.1:{listener.getsockname()[1]}/", tmp_path).refused()
    finally:
        listener.close()


@pytest.mark.parametrize("entry", ["build_image", "lock", "vendor", "doctor", "audit"])
def test_no_docker_child_of_the_python_api_inherits_the_token(
    entry: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The tasks take the token out of the environment before anything runs; the
    functions a script calls directly do the same before their first docker query
    (the engine's detection starts while the inputs are still being read)."""
    from securebuild_tasks import audit, build, doctor
    from securebuild_tasks.errors import SecurebuildError
    from tests.support.cli import stand_in_docker

    log = tmp_path / "environments"
    docker = stand_in_docker(tmp_path, f'#!/bin/sh\nenv >> "{log}"\necho 20.10.24\nexit 1\n')
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.txt").write_text("attrs==23.1.0\n")
    (project / "requirements.in").write_text("attrs\n")
    monkeypatch.setenv(INDEX_TOKEN_ENV, TOKEN)
    settings = resolve(
        {}, flags={"docker": str(docker), "index_url": URL, "key_source": "agent"}, cwd=project
    )
    calls = {
        "build_image": lambda: build.build_image(settings, cwd=project),
        "lock": lambda: build.lock(settings, cwd=project),
        "vendor": lambda: build.vendor(settings, cwd=project),
        "doctor": lambda: doctor.run_checks(settings, project),
        "audit": lambda: audit.run_audit(settings, "some/image", cwd=project),
    }
    # The stand-in answers no query usefully: only its environment counts.
    with contextlib.suppress(SecurebuildError):
        calls[entry]()
    assert log.exists(), f"{entry} ran no docker child"
    assert TOKEN not in log.read_text()


@pytest.mark.parametrize(
    "url",
    [
        "https://pkgs.dev.azure.com/acme/_packaging/feed@Release/pypi/simple/",  # a feed view
        "https://[fd00::1]:8443/simple/",
        "http://127.0.0.1:8080/simple/",
    ],
)
def test_an_at_sign_in_the_path_or_an_ipv6_host_is_no_credential(url: str, tmp_path: Path) -> None:
    """Azure Artifacts names a feed view with "@" in the path; IPv6 hosts hold ":"."""
    assert resolve({}, environ={"SECUREBUILD_INDEX_URL": url}, cwd=tmp_path).index_url == url
