"""A private package index's token: from the keyring or the environment, into a .netrc.

pip and uv authenticate to an index with HTTP Basic credentials they find in
``~/.netrc``. With ``index_url`` set, the token comes from the OS keyring
(``inv store-token``) or from ``SECUREBUILD_INDEX_TOKEN``, and becomes one
``machine HOST login USER password TOKEN`` line in a .netrc written into the
run's private 0700 work directory, given to BuildKit as the ``netrc`` secret
and removed with that directory after the build, whatever its outcome.

The token is read last, after the engine answered, like the SSH key. The
environment variable is taken out of this process's environment the first time
the tool looks (`adopt_env_token`), so no child it starts (docker, ssh,
ssh-agent, the SDK's ssh) inherits it. The index URL itself holds no secret: it
reaches pip and uv as a build arg, so changing it changes the build's cache key.
"""

from __future__ import annotations

import getpass
import netrc
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .agent import write_private
from .errors import KeySourceError, SettingsError
from .settings import INDEX_TOKEN_ENV, Settings

_taken: dict[str, str] = {}


def adopt_env_token() -> None:
    """Move ``SECUREBUILD_INDEX_TOKEN`` out of ``os.environ`` into this module.

    Every child process inherits ``os.environ`` unless told otherwise, the
    docker SDK's ssh transport included; a token that is no longer there cannot
    be passed on by any of them. Idempotent.
    """
    # Any spelling: settings are read whatever the case of their variable, and
    # a token left behind in another case would reach every child all the same.
    for name in [n for n in os.environ if n.upper() == INDEX_TOKEN_ENV]:
        value = os.environ.pop(name)
        if name == INDEX_TOKEN_ENV or INDEX_TOKEN_ENV not in _taken:
            _taken[INDEX_TOKEN_ENV] = value


def _env_token() -> str | None:
    adopt_env_token()
    return _taken.get(INDEX_TOKEN_ENV)


def index_host(url: str) -> str:
    """The host name a .netrc ``machine`` line matches for ``url`` (no port)."""
    return urlsplit(url).hostname or ""


def index_netloc(url: str) -> str:
    """Host and port of ``url``, for messages."""
    return urlsplit(url).netloc


def check_token_text(token: str, what: str) -> str:
    """A token as a .netrc can carry it; errors name ``what``, never the token."""
    token = token.strip()
    if not token:
        raise KeySourceError(f"the {what} is empty", hint="give the index's access token")
    if any(ch.isspace() or ord(ch) < 32 for ch in token) or token.startswith(("#", '"')):
        raise KeySourceError(
            f"the {what} has whitespace, control characters or a leading # or quote, which a"
            " .netrc cannot carry",
            hint="check that you pasted only the token",
        )
    if "\\" in token:
        # Python's netrc (pip's) reads a backslash as an escape, uv's does not:
        # the two would send different tokens.
        raise KeySourceError(
            f"the {what} has a backslash, which pip and uv read differently from a .netrc",
            hint="check that you pasted only the token",
        )
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        # Bytes that are not UTF-8 (from the environment or a pipe) cannot be
        # written to the .netrc or stored in a keyring; the position is not said.
        raise KeySourceError(
            f"the {what} is not UTF-8 text", hint="check that you pasted only the token"
        ) from None
    return token


@dataclass(frozen=True)
class IndexCredentials:
    """Where an index token comes from and which .netrc it goes into; holds no token."""

    settings: Settings
    source: str  # "environment" or "keyring"
    user_netrc: Path | None

    @property
    def url(self) -> str:
        """The index URL, without credentials."""
        return self.settings.index_url

    @property
    def where(self) -> str:
        """The keyring entry the token is kept in."""
        return f"{self.settings.keyring_service}/{self.settings.keyring_token}"

    @property
    def host(self) -> str:
        """The index's host name."""
        return index_host(self.url)

    def describe(self) -> str:
        """Where the token comes from, for the build's first line."""
        if self.source == "environment":
            return f"index token from {INDEX_TOKEN_ENV}"
        return f"index token from keyring {self.where}"

    def check(self) -> None:
        """Raise what `write_netrc` would, before Docker is contacted."""
        self._user_netrc_text()
        self.token()

    def token(self) -> str:
        """The token itself; `KeySourceError` naming the source when there is none."""
        if self.source == "environment":
            value = _env_token()
            if value is None:
                raise KeySourceError(
                    f"index_token_source is environment but {INDEX_TOKEN_ENV} is not set",
                    hint=f"export {INDEX_TOKEN_ENV}, or store the token with `inv store-token`",
                )
            return check_token_text(value, INDEX_TOKEN_ENV)
        value = _read_keyring(self)
        if value is None:
            raise KeySourceError(
                f"no index token in the keyring under {self.where} (for {index_netloc(self.url)})",
                hint=f"store one with `inv store-token`, or set {INDEX_TOKEN_ENV}",
            )
        return check_token_text(value, f"token in {self.where}")

    def _user_netrc_text(self) -> str:
        """The user's own .netrc, refused when it already names the index host."""
        if self.user_netrc is None:
            return ""
        try:
            hosts = netrc.netrc(str(self.user_netrc)).hosts
            text = self.user_netrc.read_text(encoding="utf-8")
        except (OSError, netrc.NetrcParseError, UnicodeDecodeError) as exc:
            raise SettingsError(
                f"cannot read the .netrc {self.user_netrc} ({exc.__class__.__name__})",
                hint="fix the file or unset securebuild.netrc",
            ) from None
        if self.host in hosts:
            raise SettingsError(
                f"both the .netrc {self.user_netrc} and index_url give credentials for {self.host}",
                hint="remove that machine from the .netrc, or unset securebuild.index_url",
            )
        return text if text.endswith("\n") or not text else text + "\n"

    def write_netrc(self, workdir: Path) -> Path:
        """Write the .netrc (the user's entries, then the index's) into ``workdir``."""
        text = self._user_netrc_text()
        user = self.settings.index_username
        line = f"machine {self.host} login {user} password {self.token()}\n"
        return write_private(workdir, "netrc.secret", text + line)

    def refused(self) -> bool:
        """Whether the index answers the token with 401 or 403 (asked after a failed build).

        pip reports a refused token as "no matching distribution", indistinguishable
        from a missing package; one request from here tells the two apart. Any
        other answer, or none, is not taken as a refusal. A redirect is followed
        only within the index's own scheme, host and port: urllib would carry
        the token to wherever the index points.
        """
        import base64
        import http.client
        import urllib.error
        import urllib.request

        try:
            pair = f"{self.settings.index_username}:{self.token()}".encode()
        except KeySourceError:
            return False
        request = urllib.request.Request(  # noqa: S310 - index_url is checked to be http(s)
            self.url, headers={"Authorization": "Basic " + base64.b64encode(pair).decode()}
        )
        opener = _same_origin_opener()
        try:
            with opener.open(request, timeout=15):
                return False
        except urllib.error.HTTPError as exc:
            return exc.code in (401, 403)
        except (OSError, ValueError, http.client.HTTPException):
            # Not an answer (no HTTP there, a cut reply): no refusal to report,
            # and the build's own error is said instead.
            return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _same_origin_opener() -> Any:
    """A urllib opener that follows a redirect only to the same scheme, host and port.

    Any other redirect is answered as the 3xx it is. Built on call: urllib.request
    imports http.client, ssl and email, which `inv --list` must not pay for.
    """
    import urllib.request

    class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(
            self,
            req: urllib.request.Request,
            fp: Any,
            code: int,
            msg: str,
            headers: Any,
            newurl: str,
        ) -> urllib.request.Request | None:
            if _origin(newurl) != _origin(req.full_url):
                return None
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(SameOriginRedirects)


def _read_keyring(creds: IndexCredentials) -> str | None:
    from keyring.errors import KeyringError

    from .keys import backend_name, keyring_backend

    backend = keyring_backend(creds.settings)
    try:
        value: str | None = backend.get_password(
            creds.settings.keyring_service, creds.settings.keyring_token
        )
    except KeyringError as exc:
        raise KeySourceError(
            f"the keyring ({backend_name(backend)}) refused to read {creds.where}:"
            f" {exc.__class__.__name__}",
            hint="unlock the keyring and try again",
        ) from None
    return value


def index_credentials(settings: Settings, cwd: Path) -> IndexCredentials | None:
    """The index credentials the settings ask for, or None without ``index_url``."""
    adopt_env_token()
    if not settings.index_url:
        return None
    source = settings.index_token_source
    if source == "auto":
        source = "environment" if _env_token() is not None else "keyring"
    user_netrc = None
    if settings.netrc:
        user_netrc = Path(settings.netrc).expanduser()
        user_netrc = user_netrc if user_netrc.is_absolute() else cwd / user_netrc
    return IndexCredentials(settings, source, user_netrc)


def read_token_input(prompt: str) -> str:
    """A token from a hidden prompt, or one line of standard input; never from argv."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")
