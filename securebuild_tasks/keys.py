"""Key sources: where the SSH key for a build comes from, chosen in a fixed order.

Like keyring's backends, each source is a small class with an availability
check that never raises (`KeySource.viable`) and one way to use it
(`KeySource.forward`), which yields the agent socket the build is given.

- ``agent``: the user's running ssh-agent. With ``agent_key`` set, the build
  sees that one key only, through a read-only filtering proxy.
- ``keyring``: a private key stored in the OS keyring.
- ``file``: a key file, its passphrase from the keyring or a prompt.

``keyring`` and ``file`` keys go into an `EphemeralAgent` for the build only.
``auto`` uses ``file`` when the user named a ``key_file``, else the first
viable of agent and keyring; it never falls back to ``~/.ssh/id_*`` on its own.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import getpass
import hashlib
import os
import socket
import stat
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .agent import EphemeralAgent, socket_in
from .errors import AgentError, KeySourceError
from .settings import Settings

#: Windows Credential Manager stores at most 2,560 bytes, as UTF-16.
_SIZE_LIMITS = {"WinVaultKeyring": 1280}
WINDOWS_AGENT_PIPE = r"\\.\pipe\openssh-ssh-agent"


def _nothing() -> None:
    """Revoking the user's own agent: nothing to do, it is theirs."""


@dataclass(frozen=True)
class ForwardedKey:
    """What a build is given: an agent socket, and which key it serves.

    ``revoke`` takes the key away from the socket at once (stops the ephemeral
    agent or the filtering proxy); it is called first when a build is
    interrupted, before waiting for docker to wind down.
    """

    socket: str
    fingerprint: str
    source: str
    revoke: Callable[[], None] = field(default=_nothing, compare=False, repr=False)


@dataclass(frozen=True)
class LoadedKey:
    """A private key decoded in memory, ready for ssh-add."""

    openssh: bytes
    fingerprint: str
    #: OpenSSH certificates of the key (public blobs), added to the agent with it.
    certificates: tuple[bytes, ...] = ()


def passphrase_name(settings: Settings) -> str:
    """The keyring entry name that holds the passphrase of the configured key."""
    return f"{settings.keyring_key}.passphrase"


class KeySource(ABC):
    """One place a key can come from."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def viable(self) -> tuple[bool, str]:
        """Say whether this source can serve a key now, and why not; never raises."""

    @abstractmethod
    def check(self) -> None:
        """Raise the specific `KeySourceError` that `forward` would, without loading a key.

        Builds call it before contacting Docker, so a missing key is reported
        first and a passphrase is never asked for a build that cannot start.
        """

    @abstractmethod
    def forward(self, workdir: Path) -> contextlib.AbstractContextManager[ForwardedKey]:
        """Make the key available on an agent socket for the duration of a build."""


class AgentKeySource(KeySource):
    """The user's running ssh-agent."""

    name = "agent"

    def socket_path(self) -> str:
        """The agent socket: the setting, $SSH_AUTH_SOCK, or Windows' agent pipe."""
        if self.settings.agent_socket:
            return os.path.expanduser(self.settings.agent_socket)
        if os.environ.get("SSH_AUTH_SOCK"):
            return os.environ["SSH_AUTH_SOCK"]
        return WINDOWS_AGENT_PIPE if sys.platform == "win32" else ""

    def viable(self) -> tuple[bool, str]:
        try:
            self._identities()
        except KeySourceError as exc:
            return False, exc.line()
        except Exception as exc:  # viability checks never raise (see module doc)
            return False, f"{exc.__class__.__name__}"
        return True, ""

    def _identities(self) -> list[Any]:
        from .agent_protocol import AgentProtocolError, list_identities

        socket = self.socket_path()
        if not socket:
            raise AgentError(
                "no ssh-agent: SSH_AUTH_SOCK is not set",
                hint="start one (`eval $(ssh-agent)`) and `ssh-add KEY`, "
                "or set securebuild.key_source=keyring",
            )
        if sys.platform == "win32":
            # The Windows agent is a named pipe; identities are checked by the build.
            return []
        try:
            identities = list_identities(socket)
        except AgentProtocolError as exc:
            raise AgentError(
                str(exc), hint="start the agent or fix SSH_AUTH_SOCK / securebuild.agent_socket"
            ) from None
        if not identities:
            raise AgentError(
                f"the ssh-agent at {socket} holds no identity",
                hint="run `ssh-add KEY`, or set securebuild.key_source=keyring",
            )
        return identities

    def _selected(self) -> tuple[list[Any], list[Any]]:
        """All identities, and those of the key agent_key names: the key and its
        certificates, which share its fingerprint (empty when none is named)."""
        identities = self._identities()
        wanted = self.settings.agent_key
        if not wanted:
            return identities, []
        if sys.platform == "win32":
            raise AgentError(
                "selecting one agent key (agent_key) is not supported on Windows yet",
                hint="load only that key into the agent, or use key_source=keyring",
            )
        named = {i.fingerprint for i in identities if i.matches(wanted)}
        matches = [i for i in identities if i.fingerprint in named]
        if len(named) != 1:
            known = "; ".join(f"{i.fingerprint} {i.comment}" for i in identities)
            raise AgentError(
                f"{'no' if not matches else 'more than one'} key in the ssh-agent matches"
                f" agent_key={wanted!r}",
                hint=f"use a SHA256 fingerprint or comment of one of: {known}",
            )
        return identities, matches

    def check(self) -> None:
        self._selected()

    @contextlib.contextmanager
    def forward(self, workdir: Path) -> Iterator[ForwardedKey]:
        identities, chosen = self._selected()
        if not chosen:
            fingerprints = ",".join(dict.fromkeys(i.fingerprint for i in identities)) or "(agent)"
            yield ForwardedKey(self.socket_path(), fingerprints, self.name)
            return
        from .agent_protocol import FilteringAgentProxy

        with FilteringAgentProxy(
            self.socket_path(), str(socket_in(workdir, "filtered-agent.sock")), chosen
        ) as proxy:
            yield ForwardedKey(proxy.socket_path, chosen[0].fingerprint, self.name, proxy.close)


class NoKeySource(KeySource):
    """No key: for builds that fetch nothing over SSH (index packages only).

    The template's SSH steps still need an agent socket (their mounts are
    required, so a build that does need a key fails at once without one):
    they get one that holds no key, so none of the user's keys is exposed to a
    build that has no use for it, and every such build shares one cache.
    """

    name = "none"

    def viable(self) -> tuple[bool, str]:
        # The keyless agent listens on a Unix socket, which native Windows lacks.
        if sys.platform == "win32" or not hasattr(socket, "AF_UNIX"):
            return False, "no Unix sockets on this platform"
        return True, ""

    def check(self) -> None:
        """Nothing to check: there is no key."""

    @contextlib.contextmanager
    def forward(self, workdir: Path) -> Iterator[ForwardedKey]:
        from .agent_protocol import FilteringAgentProxy

        path = str(socket_in(workdir, "keyless-agent.sock"))
        with FilteringAgentProxy("", path, ()) as proxy:
            yield ForwardedKey(proxy.socket_path, "", self.name, proxy.close)


class KeyringKeySource(KeySource):
    """A private key kept in the OS keyring."""

    name = "keyring"

    def viable(self) -> tuple[bool, str]:
        try:
            if self._read(self.settings.keyring_key) is None:
                return False, (
                    f"no key in the keyring under {self.settings.keyring_service}/"
                    f"{self.settings.keyring_key}"
                )
        except KeySourceError as exc:
            return False, exc.line()
        except Exception as exc:  # viability checks never raise (see module doc)
            return False, exc.__class__.__name__
        return True, ""

    def _read(self, entry: str) -> str | None:
        backend = keyring_backend(self.settings)
        from keyring.errors import KeyringError

        try:
            value: str | None = backend.get_password(self.settings.keyring_service, entry)
        except KeyringError as exc:
            raise KeySourceError(
                f"the keyring ({backend_name(backend)}) refused to read "
                f"{self.settings.keyring_service}/{entry}: {exc.__class__.__name__}",
                hint="unlock the keyring and try again",
            ) from None
        return value

    def _stored_key(self) -> str:
        text = self._read(self.settings.keyring_key)
        if text is None:
            raise KeySourceError(
                f"no key in the keyring under {self.settings.keyring_service}/"
                f"{self.settings.keyring_key}",
                hint="store one with `inv store-key --key-file PATH`",
            )
        return text

    def check(self) -> None:
        self._stored_key()

    @contextlib.contextmanager
    def forward(self, workdir: Path) -> Iterator[ForwardedKey]:
        label = f"keyring entry {self.settings.keyring_service}/{self.settings.keyring_key}"
        text = self._stored_key()
        key = load_private_key(text.encode("utf-8"), label, lambda: self._passphrase_or_fail(label))
        with _ephemeral(workdir, key, self.settings, self.name) as forwarded:
            yield forwarded

    def _passphrase_or_fail(self, label: str) -> bytes:
        value = self._read(passphrase_name(self.settings))
        if value is None:
            raise KeySourceError(
                f"the {label} is encrypted and the keyring has no passphrase for it",
                hint="store it with `inv store-key --passphrase-only`",
            )
        return value.encode("utf-8")


class FileKeySource(KeySource):
    """A private key file, encrypted or not."""

    name = "file"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._data: bytes | None = None
        self._status: os.stat_result | None = None

    def path(self) -> Path:
        """The configured key file."""
        return Path(self.settings.key_file).expanduser()

    def viable(self) -> tuple[bool, str]:
        if not self.settings.key_file:
            return False, "no key_file is set"
        try:
            readable = os.access(self.path(), os.R_OK) and self.path().is_file()
        except OSError as exc:
            return False, exc.__class__.__name__
        return (True, "") if readable else (False, f"cannot read key file {self.path()}")

    def _read(self) -> bytes:
        """The key file's bytes, read once: a key given as ``<(pass show key)``, a
        pipe or a FIFO, can be read only once, and `check` reads it before
        `forward`."""
        if self._data is None:
            self._data = self._read_file()
        return self._data

    def _read_file(self) -> bytes:
        path = self.path()
        try:
            with path.open("rb") as file:
                # The mode of the file read, not of whatever the path names later.
                self._status = os.fstat(file.fileno())
                return file.read()
        except FileNotFoundError:
            raise KeySourceError(
                f"key file {path} does not exist", hint="fix securebuild.key_file"
            ) from None
        except IsADirectoryError:
            raise KeySourceError(
                f"key file {path} is a directory", hint="point securebuild.key_file at a key"
            ) from None
        except OSError as exc:
            raise KeySourceError(
                f"cannot read key file {path} ({exc.strerror})",
                hint="check the file's permissions",
            ) from None

    def check(self) -> None:
        data = self._read()
        if b"PRIVATE KEY-----" not in data:
            raise KeySourceError(
                f"the key file {self.path()} is not a private key (no PEM or OpenSSH private"
                " key block)",
                hint="give the private half (e.g. id_ed25519), not the .pub file",
            )
        self._refuse_loose_permissions()
        if self.settings.passphrase_source == "keyring":  # noqa: S105
            # Known before the build, without a terminal: the keyring has this
            # key's passphrase, and it opens the key (doctor runs this check too).
            label = f"key file {self.path()}"
            try:
                load_private_key(data, label, lambda: self._stored_passphrase(label) or b"")
            except WrongPassphraseError:
                raise self._passphrase_does_not_open(label) from None
        certificate_beside(self.path())

    def _refuse_loose_permissions(self) -> None:
        """Refuse a key file of the user's that other users may read, as ssh and
        ssh-add do ("UNPROTECTED PRIVATE KEY FILE"): such a key has to be taken
        as known to them. A file another user owns (a deploy key root keeps, a
        mounted secret) is theirs to protect, as ssh sees it too. Windows has no
        such mode bits."""
        status = self._status
        if sys.platform == "win32" or status is None or status.st_uid != os.getuid():
            return
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise KeySourceError(
                f"key file {self.path()} can be read by other users (mode {mode:o}), so ssh"
                " would refuse it too",
                hint=f"chmod 600 {self.path()}",
            )

    def _with_certificate(self, key: LoadedKey) -> LoadedKey:
        """``key`` with the certificate beside its file, as ssh and ssh-add take it."""
        found = certificate_beside(self.path())
        if found is None:
            return key
        path, blob = found
        from .agent_protocol import Identity

        if Identity(blob, "").fingerprint != key.fingerprint:
            raise KeySourceError(
                f"the certificate {path} certifies another key than the key file {self.path()}",
                hint="have this key signed again, or remove the stale certificate",
            )
        return dataclasses.replace(key, certificates=(blob,))

    @contextlib.contextmanager
    def forward(self, workdir: Path) -> Iterator[ForwardedKey]:
        label = f"key file {self.path()}"
        data = self._read()
        self._refuse_loose_permissions()
        from_keyring: list[bool] = []

        def passphrase() -> bytes:
            value = self._stored_passphrase(label)
            from_keyring.append(value is not None)
            return value if value is not None else self._prompt(label)

        try:
            key = load_private_key(data, label, passphrase)
        except WrongPassphraseError:
            if not from_keyring or not from_keyring[0]:
                raise
            # The keyring's passphrase entry is shared by every key file: it may
            # be another key's. With auto, a terminal may still give the right one.
            if self.settings.passphrase_source != "auto" or not sys.stdin.isatty():  # noqa: S105
                raise self._passphrase_does_not_open(label) from None
            key = load_private_key(data, label, lambda: self._prompt(label))
        key = self._with_certificate(key)
        with _ephemeral(workdir, key, self.settings, self.name) as forwarded:
            yield forwarded

    def _passphrase_does_not_open(self, label: str) -> KeySourceError:
        entry = f"{self.settings.keyring_service}/{passphrase_name(self.settings)}"
        return KeySourceError(
            f"the passphrase in the keyring entry {entry} does not open the {label}",
            hint="store this key's with `inv store-key --key-file PATH --passphrase-only`,"
            " or set passphrase_source=prompt",
        )

    def _stored_passphrase(self, label: str) -> bytes | None:
        """The keyring's passphrase, when the settings look there and it has one."""
        mode = self.settings.passphrase_source
        if mode in ("auto", "keyring"):
            try:
                stored = KeyringKeySource(self.settings)._read(passphrase_name(self.settings))
            except KeySourceError:
                if mode == "keyring":
                    raise
                stored = None
            if stored is not None:
                return stored.encode("utf-8")
            if mode == "keyring":
                raise KeySourceError(
                    f"the {label} is encrypted and the keyring has no passphrase for it",
                    hint="store it with `inv store-key --key-file PATH --passphrase-only`",
                )
        return None

    def _prompt(self, label: str) -> bytes:
        if not sys.stdin.isatty():
            raise KeySourceError(
                f"the {label} is encrypted and there is no terminal to ask for its passphrase",
                hint="store the passphrase with `inv store-key --key-file PATH --passphrase-only`",
            )
        return getpass.getpass(f"Passphrase for {label}: ").encode("utf-8")


SOURCES: dict[str, type[KeySource]] = {
    "agent": AgentKeySource,
    "keyring": KeyringKeySource,
    "file": FileKeySource,
}
AUTO_ORDER = ("agent", "keyring", "file")


def choose_key_source(settings: Settings) -> KeySource:
    """Return the configured source, or in ``auto`` mode the first viable one.

    A ``key_file`` the user named wins in ``auto`` mode: naming one key is a
    narrower choice than forwarding a whole agent.
    """
    if settings.key_source != "auto":
        return SOURCES[settings.key_source](settings)
    if settings.key_file:
        return FileKeySource(settings)
    reasons = []
    for name in AUTO_ORDER:
        source = SOURCES[name](settings)
        ok, why = source.viable()
        if ok:
            return source
        reasons.append(f"{name}: {why}")
    raise KeySourceError(
        "no key source is usable (" + "; ".join(reasons) + ")",
        hint="load a key into your ssh-agent, store one with `inv store-key --key-file PATH`,"
        " or set securebuild.key_file",
    )


@contextlib.contextmanager
def _ephemeral(
    workdir: Path, key: LoadedKey, settings: Settings, source: str
) -> Iterator[ForwardedKey]:
    if sys.platform == "win32":
        raise KeySourceError(
            f"key_source={source} needs an ephemeral ssh-agent on a Unix socket, which native"
            " Windows lacks",
            hint="load the key into the Windows OpenSSH agent (`ssh-add KEY`) and use"
            " key_source=agent, or run from WSL",
        )
    with EphemeralAgent(workdir, lifetime=settings.key_lifetime) as agent:
        agent.add(key.openssh)
        for certificate in key.certificates:
            agent.add_certificate(key.openssh, certificate)
        yield ForwardedKey(str(agent.socket), key.fingerprint, source, agent.stop)


#: What ssh and ssh-add look for beside a key file: the key's OpenSSH certificate.
CERTIFICATE_SUFFIX = "-cert.pub"


def certificate_beside(key_file: Path) -> tuple[Path, bytes] | None:
    """The OpenSSH certificate ``KEY-cert.pub`` beside ``key_file`` (its path and
    blob), as ssh and ssh-add find it; None when there is none. One that is not a
    certificate is refused in one line (it holds no secret, so it may be named)."""
    path = key_file.with_name(key_file.name + CERTIFICATE_SUFFIX)
    if not path.is_file():
        return None
    from .agent_protocol import AgentProtocolError, Identity

    try:
        # The comment after the blob may be any text (a name, an address).
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise KeySourceError(
            f"cannot read the certificate {path} ({exc.strerror or exc.__class__.__name__})",
            hint="check its permissions, or remove it to forward the key alone",
        ) from None
    try:
        kind, body = text.split()[:2]
        blob = base64.b64decode(body, validate=True)
        identity = Identity(blob, "")
        if not identity.is_certificate or identity.key_type != kind:
            raise ValueError(kind)
        identity.key_blob  # noqa: B018 - parses the certified key's fields
    except (ValueError, AgentProtocolError):
        raise KeySourceError(
            f"{path} is not an OpenSSH certificate (TYPE-cert-v01@openssh.com BASE64 line)",
            hint="replace it with the certificate your CA signed for this key, or remove it",
        ) from None
    if not kind.startswith(_CERTIFIABLE):
        raise KeySourceError(
            f"the certificate {path} is of a {kind.split('-cert-')[0]} key, which the tool"
            " cannot forward with its certificate",
            hint="use an ed25519, ecdsa or rsa key, or load the pair into your ssh-agent"
            " (`ssh-add KEY`) and use key_source=agent",
        )
    return path, blob


#: Key types whose certificates go into the ephemeral agent (agent_protocol.add_certificate).
_CERTIFIABLE = ("ssh-ed25519-cert-", "ecdsa-sha2-nistp", "ssh-rsa-cert-")


class WrongPassphraseError(KeySourceError):
    """The passphrase given does not open the key."""


def _openssh_header(data: bytes) -> tuple[str, str] | None:
    """An OpenSSH private key's cipher and key type (both stored in the clear,
    ahead of the encrypted part), or None when ``data`` is not one."""
    import binascii

    from .agent_protocol import AgentProtocolError
    from .agent_protocol import _Reader as WireReader  # the SSH wire encoding's reader

    lines = data.decode("ascii", errors="replace").splitlines()
    body = "".join(line.strip() for line in lines if line.strip() and "-----" not in line)
    try:
        raw = base64.b64decode(body)
    except (binascii.Error, ValueError):
        return None
    magic = b"openssh-key-v1\0"
    if not raw.startswith(magic):
        return None
    reader = WireReader(raw[len(magic) :])
    try:
        cipher = reader.string()
        reader.string()  # the kdf's name
        reader.string()  # its options
        reader.uint32()  # the number of keys
        key_type = WireReader(reader.string()).string()  # the public key's first field
    except AgentProtocolError:
        return None
    return cipher.decode("ascii", "replace"), key_type.decode("ascii", "replace")


def _unsupported(data: bytes, label: str) -> KeySourceError:
    """Why a key cannot be loaded here, and what works instead."""
    header = _openssh_header(data)
    if header and header[1].startswith("sk-"):
        return KeySourceError(
            f"the {label} is a FIDO security-key key ({header[1]}), which signs only with"
            " its hardware token",
            hint="load it into your ssh-agent (`ssh-add KEY`) and use key_source=agent",
        )
    if header and header[0] not in ("none", "aes256-ctr", "aes256-gcm@openssh.com"):
        return KeySourceError(
            f"the {label} is encrypted with {header[0]}, which this tool cannot decrypt",
            hint="re-encrypt it with ssh-keygen's default cipher (`ssh-keygen -p -Z aes256-ctr"
            " -f KEY`), or load it into your ssh-agent and use key_source=agent",
        )
    return KeySourceError(
        f"the {label} uses an algorithm or cipher this installation cannot read",
        hint="reinstall securebuild-tasks with its dependencies (bcrypt), or load the key into"
        " your ssh-agent and use key_source=agent",
    )


def load_private_key(data: bytes, label: str, passphrase: Callable[[], bytes]) -> LoadedKey:
    """Decode a private key (OpenSSH or PEM), asking for a passphrase only if needed.

    The result is re-encoded as an unencrypted OpenSSH key in memory, only to be
    piped to ``ssh-add``. Errors name ``label``, never the key's content.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    loader: Callable[..., Any]
    if b"BEGIN OPENSSH PRIVATE KEY" in data:
        loader = serialization.load_ssh_private_key
    elif b"PRIVATE KEY-----" in data:
        loader = serialization.load_pem_private_key
    else:
        raise KeySourceError(
            f"the {label} is not a private key (no PEM or OpenSSH private key block)",
            hint="give the private half (e.g. id_ed25519), not the .pub file",
        )
    try:
        try:
            key = loader(data, password=None)
        except TypeError:  # "Password was not given but private key is encrypted"
            secret = passphrase()
            if not secret:
                # cryptography takes b"" for no password and raises TypeError again.
                raise KeySourceError(
                    f"the {label} is encrypted and the passphrase given for it is empty",
                    hint="give its passphrase at the prompt, or store it with"
                    " `inv store-key --passphrase-only`",
                ) from None
            try:
                key = loader(data, password=secret)
            except ValueError:
                raise WrongPassphraseError(
                    f"wrong passphrase for the {label}", hint="try again with the right one"
                ) from None
    except UnsupportedAlgorithm:
        raise _unsupported(data, label) from None
    except (ValueError, TypeError, NotImplementedError) as exc:
        header = _openssh_header(data)
        if header and header[1].startswith("sk-"):
            raise _unsupported(data, label) from None
        kind = exc.__class__.__name__
        raise KeySourceError(
            f"the {label} cannot be read as a private key ({kind})",
            hint="check that it is a complete, supported SSH private key",
        ) from None
    try:
        openssh = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    except (ValueError, TypeError, AttributeError):
        raise KeySourceError(
            f"the {label} is of a key type ssh-agent cannot use",
            hint="use an ed25519, ecdsa or rsa key",
        ) from None
    blob = base64.b64decode(public.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return LoadedKey(openssh, f"SHA256:{digest}")


def keyring_backend(settings: Settings) -> Any:
    """The keyring backend to use; refuses none and, unless allowed, plain-text ones."""
    import keyring
    from keyring.backends import fail

    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # keyring imports the backend its configuration names
        named = os.environ.get("PYTHON_KEYRING_BACKEND")
        where = f"PYTHON_KEYRING_BACKEND={named}" if named else "keyring's configuration file"
        raise KeySourceError(
            f"the keyring backend named by {where} cannot be loaded ({exc.__class__.__name__})",
            hint="fix or unset it (`keyring --list-backends` lists those installed),"
            " or use key_source=agent",
        ) from None
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):
        backend = _protecting_chain(backend.backends, settings)
    if backend is None or isinstance(backend, fail.Keyring) or backend.priority <= 0:
        raise KeySourceError(
            "no keyring backend is available",
            hint="on Linux run a Secret Service (GNOME Keyring, KWallet, KeePassXC) and "
            "`pip install secretstorage`; or use key_source=agent",
        )
    if backend.priority < 1 and not settings.allow_insecure_keyring:
        raise KeySourceError(
            f"the keyring backend {type(backend).__module__}.{type(backend).__name__} does not"
            " protect secrets",
            hint="use the OS keyring, or set securebuild.allow_insecure_keyring=true to accept it",
        )
    return backend


def _protecting_chain(chained: list[Any], settings: Settings) -> Any:
    """keyring's chainer, chosen when another backend is installed beside the OS
    keyring (a cloud registry's credential helper, say), stores a secret in the
    first chained backend that takes it, down to a plain-text file: its own
    priority says nothing of where a secret lands. So the chain is judged by
    its members: those that do not protect secrets are dropped unless allowed,
    one member left is used as itself, and a chain whose members all decline
    to store (credential helpers only read) says so rather than storing
    nothing without a word, as keyring's chainer does."""
    from keyring.backends.chainer import ChainerBackend

    kept = [b for b in chained if b.priority >= 1 or settings.allow_insecure_keyring]
    if not kept:
        # The best of them is judged (and refused) as a backend of its own.
        return chained[0] if chained else None
    if len(kept) == 1:
        return kept[0]

    class ProtectingChain(ChainerBackend):
        priority = max(b.priority for b in kept)
        backends = kept
        members = ", ".join(f"{type(b).__module__}.{type(b).__name__}" for b in kept)

        def set_password(self, service: str, username: str, password: str) -> None:
            for member in kept:
                try:
                    member.set_password(service, username, password)
                except NotImplementedError:
                    continue
                return
            raise NotImplementedError("none of the chained keyrings stores secrets")

    return ProtectingChain()  # type: ignore[no-untyped-call]


def backend_name(backend: Any) -> str:
    """A keyring backend's class name, or a chain's members."""
    members = getattr(backend, "members", None)
    return f"a chain of {members}" if members else type(backend).__name__


def _size_limit(backend: Any) -> int | None:
    """The most characters ``backend`` (or any backend it chains) holds, if limited."""
    members = backend.backends if getattr(backend, "members", None) else [backend]
    limits = [_SIZE_LIMITS[type(b).__name__] for b in members if type(b).__name__ in _SIZE_LIMITS]
    return min(limits, default=None)


def store_secret(settings: Settings, entry: str, value: str) -> str:
    """Store ``value`` under ``entry``; return the backend's name. Checks size limits."""
    backend = keyring_backend(settings)
    limit = _size_limit(backend)
    if limit is not None and len(value) > limit:
        raise KeySourceError(
            f"the key is {len(value)} characters and {backend_name(backend)} holds at most {limit}",
            hint="keep the key in a passphrase-protected file and store only its passphrase: "
            "`inv store-key --key-file PATH --passphrase-only`, then key_source=file",
        )
    from keyring.errors import KeyringError

    try:
        backend.set_password(settings.keyring_service, entry, value)
    except NotImplementedError:
        raise KeySourceError(
            f"the keyring ({backend_name(backend)}) cannot store secrets, only read them",
            hint="make the OS keyring the one keyring uses (`keyring --list-backends`),"
            " or use key_source=agent",
        ) from None
    except (KeyringError, OSError, RuntimeError) as exc:
        raise KeySourceError(
            f"the keyring ({backend_name(backend)}) refused to store "
            f"{settings.keyring_service}/{entry}: {exc.__class__.__name__}",
            hint="unlock the keyring, or keep the key in a passphrase-protected file",
        ) from None
    return backend_name(backend)


def delete_secret(settings: Settings, entry: str) -> bool:
    """Remove ``entry`` from the keyring; return whether it was there."""
    backend = keyring_backend(settings)
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        backend.delete_password(settings.keyring_service, entry)
    except PasswordDeleteError:
        return False
    except KeyringError as exc:
        raise KeySourceError(
            f"the keyring refused to remove {settings.keyring_service}/{entry}:"
            f" {exc.__class__.__name__}",
            hint="unlock the keyring and try again",
        ) from None
    return True


def store_key_entries(
    settings: Settings,
    data: bytes,
    label: str,
    ask_passphrase: Callable[[], bytes],
    *,
    passphrase_only: bool,
) -> list[str]:
    """Check a key, then store it (or only its passphrase); return the entries written.

    The key is decoded first, so a damaged key or a wrong passphrase is caught
    before anything is stored. An encrypted key's passphrase is stored too, under
    `passphrase_name`; ``passphrase_only`` stores just that, for keys kept in a
    file (the way around keyrings too small for a whole key).
    """
    asked: list[bytes] = []

    def passphrase() -> bytes:
        asked.append(ask_passphrase())
        if not asked[-1]:
            raise KeySourceError(
                f"the {label} is encrypted and no passphrase was given",
                hint="type it at the prompt, or pipe it on standard input",
            )
        return asked[-1]

    loaded = load_private_key(data, label, passphrase)
    stored: list[str] = []
    phrase = ""
    if asked:
        # Checked before anything is stored: the keyring takes text only.
        try:
            phrase = asked[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise KeySourceError(
                f"the passphrase of the {label} is not UTF-8 text, which a keyring cannot hold",
                hint="change it to UTF-8 text with `ssh-keygen -p -f KEY`, then store the key",
            ) from None
    if passphrase_only and not asked:
        raise KeySourceError(
            f"the {label} is not encrypted, so it has no passphrase to store",
            hint="store the key itself: `inv store-key --key-file PATH`",
        )
    if not passphrase_only:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KeySourceError(
                f"the {label} is not text", hint="give an OpenSSH or PEM private key"
            ) from None
        store_secret(settings, settings.keyring_key, text)
        stored.append(f"{settings.keyring_service}/{settings.keyring_key} ({loaded.fingerprint})")
    if asked:
        store_secret(settings, passphrase_name(settings), phrase)
        stored.append(f"{settings.keyring_service}/{passphrase_name(settings)}")
    return stored


def forget_key_entries(settings: Settings) -> list[str]:
    """Remove the key and its passphrase from the keyring; return what was removed."""
    removed = []
    for entry in (settings.keyring_key, passphrase_name(settings)):
        if delete_secret(settings, entry):
            removed.append(f"{settings.keyring_service}/{entry}")
    return removed
