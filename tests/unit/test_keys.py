"""Key sources: decoding keys, the chooser's order, and keyring handling.

An in-memory keyring backend stands in for the OS keyring here; the real
Secret Service is exercised by the integration tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from securebuild_tasks.errors import AgentError, KeySourceError
from securebuild_tasks.keys import (
    AgentKeySource,
    FileKeySource,
    KeyringKeySource,
    certificate_beside,
    choose_key_source,
    forget_key_entries,
    load_private_key,
    passphrase_name,
    store_key_entries,
    store_secret,
)
from securebuild_tasks.settings import Settings
from tests.support.leaks import key_needles
from tests.support.realparts import Agent, make_key, run


class MemoryKeyring(KeyringBackend):
    """A keyring that lives in a dict (priority 5: counts as secure)."""

    priority = 5  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.store:
            raise PasswordDeleteError(username)
        del self.store[(service, username)]


class PlaintextKeyring(MemoryKeyring):
    """Like keyrings.alt's plaintext file backend: priority below 1."""

    priority = 0.5  # type: ignore[assignment]


class WinVaultKeyring(MemoryKeyring):
    """Named like keyring's Windows backend, to test its size limit."""


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """Install an in-memory keyring for one test."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the user's own agent plays no part."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]


def _never() -> bytes:
    raise AssertionError("the passphrase was asked for an unencrypted key")


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_load_unencrypted_key_gives_ssh_keygen_fingerprint(tmp_path: Path, kind: str) -> None:
    """An unencrypted key loads without a passphrase; its fingerprint matches ssh-keygen's."""
    key = make_key(tmp_path, f"k-{kind}", kind=kind)
    loaded = load_private_key(key.private_bytes, "key file k", _never)
    assert loaded.fingerprint == _fingerprint(Path(str(key.private) + ".pub"))
    assert b"BEGIN OPENSSH PRIVATE KEY" in loaded.openssh


def test_load_encrypted_key_asks_once(tmp_path: Path) -> None:
    """An encrypted key asks for its passphrase once and decrypts with it."""
    key = make_key(tmp_path, "enc", passphrase="open sesame")
    asked: list[int] = []

    def passphrase() -> bytes:
        asked.append(1)
        return b"open sesame"

    loaded = load_private_key(key.private_bytes, "key file enc", passphrase)
    assert asked == [1]
    assert loaded.fingerprint == _fingerprint(Path(str(key.private) + ".pub"))


def test_wrong_passphrase_names_the_key_not_its_bytes(tmp_path: Path) -> None:
    """A wrong passphrase is one message that names the key and holds none of its bytes."""
    key = make_key(tmp_path, "enc", passphrase="open sesame")
    with pytest.raises(KeySourceError, match="wrong passphrase for the key file enc") as info:
        load_private_key(key.private_bytes, "key file enc", lambda: b"open barley")
    text = str(info.value).encode()
    assert not any(n in text for n in key_needles(key.private_bytes, key.passphrase))
    assert b"open barley" not in text


@pytest.mark.parametrize("kind", ["ed25519", "rsa-pem"])
def test_empty_passphrase_is_said_to_be_empty(tmp_path: Path, kind: str) -> None:
    """Enter at the prompt, or an empty stored passphrase: said as such, for either format
    (cryptography takes an empty password for none and would say the key is unreadable)."""
    key = make_key(tmp_path, "enc", passphrase="open sesame", kind=kind.split("-")[0])
    if kind == "rsa-pem":
        phrase = "open sesame"
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-p",
                "-m",
                "PEM",
                "-P",
                phrase,
                "-N",
                phrase,
                "-f",
                str(key.private),
            ],
            check=True,
            capture_output=True,
        )
        assert b"BEGIN RSA PRIVATE KEY" in key.private.read_bytes()
    with pytest.raises(KeySourceError, match="the passphrase given for it is empty"):
        load_private_key(key.private.read_bytes(), "key file enc", lambda: b"")


def test_keyring_source_says_its_stored_passphrase_is_empty(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """A passphrase entry set to "" by another tool is named, not taken for a bad key."""
    key = make_key(tmp_path, "enc", passphrase="pw two")
    settings = Settings()
    memory_keyring.set_password(
        settings.keyring_service, settings.keyring_key, key.private_bytes.decode()
    )
    memory_keyring.set_password(settings.keyring_service, passphrase_name(settings), "")
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    source = KeyringKeySource(settings)
    with (
        pytest.raises(KeySourceError, match="passphrase given for it is empty"),
        source.forward(workdir),
    ):
        pass


def test_pem_rsa_key_loads(tmp_path: Path) -> None:
    """A traditional PEM RSA key ("BEGIN RSA PRIVATE KEY") is accepted too."""
    key = make_key(tmp_path, "pem", kind="rsa")
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-m", "PEM", "-N", "", "-f", str(key.private)],
        check=True,
        capture_output=True,
    )
    assert b"BEGIN RSA PRIVATE KEY" in key.private.read_bytes()
    loaded = load_private_key(key.private.read_bytes(), "key file pem", _never)
    assert loaded.fingerprint == _fingerprint(Path(str(key.private) + ".pub"))


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrG x\n", "not a private key"),
        (b"", "not a private key"),
    ],
)
def test_garbage_is_refused_clearly(data: bytes, phrase: str) -> None:
    """Public keys and empty files give a KeySourceError, never a crash."""
    with pytest.raises(KeySourceError, match=phrase):
        load_private_key(data, "key file x", _never)


def test_damaged_key_is_refused_clearly(tmp_path: Path) -> None:
    """A key whose body was cut short gives a KeySourceError, never a crash.

    The key is made at test time: no key block is committed to the repository.
    """
    lines = make_key(tmp_path, "damaged").private_bytes.splitlines()
    damaged = b"\n".join([lines[0], lines[1][:16], lines[-1]]) + b"\n"
    with pytest.raises(KeySourceError, match="cannot be read"):
        load_private_key(damaged, "key file x", _never)


def test_auto_order_named_file_then_agent_then_keyring(
    tmp_path: Path,
    memory_keyring: MemoryKeyring,
    no_agent: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """auto: a named key_file wins; otherwise the agent, then the keyring."""
    key = make_key(tmp_path / "keys", "deploy")
    memory_keyring.set_password("securebuild-tasks", "ssh-key", "x")
    assert isinstance(choose_key_source(Settings()), KeyringKeySource)

    agent = Agent(tmp_path / "agent").start()
    try:
        agent.add(key)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
        assert isinstance(choose_key_source(Settings()), AgentKeySource)
        # Naming one key file is narrower than forwarding the whole agent.
        assert isinstance(choose_key_source(Settings(key_file=str(key.private))), FileKeySource)
    finally:
        agent.stop()


def test_auto_never_falls_back_to_default_key_files(
    tmp_path: Path,
    memory_keyring: MemoryKeyring,
    no_agent: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nothing configured, auto fails and says why per source; ~/.ssh is not read."""
    home = tmp_path / "home"
    make_key(home / ".ssh", "id_ed25519")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(KeySourceError) as info:
        choose_key_source(Settings())
    message = str(info.value)
    assert "agent: " in message
    assert "keyring: " in message
    assert "file: no key_file is set" in message


def test_viable_never_raises(memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    """Every source's viability check answers (False, reason) on broken setups."""
    settings = Settings(
        agent_socket=str(tmp_path / "nope.sock"), key_file=str(tmp_path / "missing")
    )
    for source in (AgentKeySource(settings), KeyringKeySource(settings), FileKeySource(settings)):
        ok, why = source.viable()
        assert ok is False
        assert why


def test_plaintext_keyring_refused_unless_allowed(tmp_path: Path) -> None:
    """A backend with priority below 1 is refused unless the user opts in."""
    previous = keyring.get_keyring()
    keyring.set_keyring(PlaintextKeyring())
    try:
        with pytest.raises(KeySourceError, match="does not protect secrets"):
            store_secret(Settings(), "entry", "value")
        store_secret(Settings(allow_insecure_keyring=True), "entry", "value")
        assert keyring.get_keyring().get_password("securebuild-tasks", "entry") == "value"
    finally:
        keyring.set_keyring(previous)


class ReadOnlyHelper(MemoryKeyring):
    """Like a cloud registry's credential helper: high priority, reads only."""

    priority = 9  # type: ignore[assignment]

    def set_password(self, service: str, username: str, password: str) -> None:
        raise NotImplementedError()


@pytest.fixture
def chained(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MemoryKeyring]]:
    """keyring's own chainer as the keyring, over the backends the test lists."""
    from keyring.backends.chainer import ChainerBackend

    members: list[MemoryKeyring] = []
    monkeypatch.setattr("keyring.backend.get_all_keyring", lambda: members)
    previous = keyring.get_keyring()
    keyring.set_keyring(ChainerBackend())
    yield members
    keyring.set_keyring(previous)


def test_a_chain_never_stores_in_its_plain_text_member(chained: list[MemoryKeyring]) -> None:
    """keyring's chainer says priority 10 and stores in the first member that takes a
    secret: behind a read-only helper, that was the plain-text file. The protecting
    members alone are used; with none, nothing is stored and the user is told."""
    helper, secure, plain = ReadOnlyHelper(), MemoryKeyring(), PlaintextKeyring()
    chained += [helper, plain]
    with pytest.raises(KeySourceError) as info:
        store_secret(Settings(), "entry", "value")
    assert str(info.value) == (
        "the keyring (ReadOnlyHelper) cannot store secrets, only read them: make the OS"
        " keyring the one keyring uses (`keyring --list-backends`), or use key_source=agent"
    )
    assert plain.store == {}
    chained.insert(1, secure)
    stored_in = store_secret(Settings(), "entry", "value")
    assert "tests.unit.test_keys.MemoryKeyring" in stored_in
    assert secure.store == {("securebuild-tasks", "entry"): "value"}
    assert plain.store == {}
    source = KeyringKeySource(Settings())
    assert source._read("entry") == "value"
    # Allowed, the plain-text member is part of the chain again.
    chained.remove(secure)
    store_secret(Settings(allow_insecure_keyring=True), "other", "value")
    assert plain.store == {("securebuild-tasks", "other"): "value"}


def test_windows_size_limit_says_what_to_do(tmp_path: Path) -> None:
    """An RSA key too big for Windows Credential Manager is refused with the way around."""
    key = make_key(tmp_path, "big", kind="rsa")
    previous = keyring.get_keyring()
    backend = WinVaultKeyring()
    keyring.set_keyring(backend)
    try:
        with pytest.raises(KeySourceError, match="passphrase-only") as info:
            store_key_entries(
                Settings(), key.private_bytes, "key file big", _never, passphrase_only=False
            )
    finally:
        keyring.set_keyring(previous)
    assert "at most 1280" in str(info.value)
    assert backend.store == {}


def test_store_and_forget_round_trip(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    """store-key keeps the key text and its passphrase; forget-key removes both."""
    key = make_key(tmp_path, "enc", passphrase="pw one")
    settings = Settings()
    stored = store_key_entries(
        settings, key.private_bytes, "key file enc", lambda: b"pw one", passphrase_only=False
    )
    assert len(stored) == 2
    assert memory_keyring.get_password(settings.keyring_service, settings.keyring_key) == (
        key.private_bytes.decode()
    )
    assert memory_keyring.get_password(settings.keyring_service, passphrase_name(settings)) == (
        "pw one"
    )
    assert len(forget_key_entries(settings)) == 2
    assert memory_keyring.store == {}
    assert forget_key_entries(settings) == []


def test_passphrase_only_refuses_unencrypted_key(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """--passphrase-only on a key without passphrase stores nothing and says so."""
    key = make_key(tmp_path, "plain")
    with pytest.raises(KeySourceError, match="not encrypted"):
        store_key_entries(
            Settings(), key.private_bytes, "key file plain", _never, passphrase_only=True
        )
    assert memory_keyring.store == {}


def _listed(socket: str) -> str:
    """What `ssh-add -l` lists on the agent at ``socket``."""
    return subprocess.run(
        ["ssh-add", "-l", "-E", "sha256"],
        env={"SSH_AUTH_SOCK": socket},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_another_keys_passphrase_in_the_keyring(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keyring's passphrase entry is shared by every key file: when it opens another
    key, a terminal is asked (auto); without one, the line names the entry to fix."""
    stored = make_key(tmp_path / "a", "first", passphrase="first phrase")
    other = make_key(tmp_path / "b", "second", passphrase="second phrase")
    settings = Settings(key_file=str(other.private))
    store_key_entries(
        settings,
        stored.private_bytes,
        "key file first",
        lambda: b"first phrase",
        passphrase_only=True,
    )
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(KeySourceError) as info, FileKeySource(settings).forward(workdir):
        pass
    assert "passphrase in the keyring entry securebuild-tasks/ssh-key.passphrase" in str(info.value)
    assert "passphrase_source=prompt" in info.value.line()

    # At a terminal, the user types this key's passphrase and the key is forwarded.
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: "second phrase")
    with FileKeySource(settings).forward(workdir) as forwarded:
        listed = _listed(forwarded.socket)
    assert forwarded.fingerprint in listed


def test_keyring_source_uses_stored_passphrase(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """An encrypted key in the keyring is opened with the passphrase stored beside it."""
    key = make_key(tmp_path, "enc", passphrase="pw two")
    settings = Settings()
    store_key_entries(
        settings, key.private_bytes, "key file enc", lambda: b"pw two", passphrase_only=False
    )
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    with KeyringKeySource(settings).forward(workdir) as forwarded:
        listed = _listed(forwarded.socket)
    assert forwarded.fingerprint in listed
    assert len(listed.strip().splitlines()) == 1


def test_agent_source_with_selector_forwards_one_key(tmp_path: Path) -> None:
    """agent_key makes the forwarded socket list exactly the chosen key."""
    agent = Agent(tmp_path / "agent").start()
    first, second = make_key(tmp_path, "first"), make_key(tmp_path, "second")
    try:
        agent.add(first)
        agent.add(second)
        settings = Settings(agent_socket=str(agent.socket), agent_key="second")
        workdir = tmp_path / "work"
        workdir.mkdir(mode=0o700)
        with AgentKeySource(settings).forward(workdir) as forwarded:
            listed = (
                subprocess.run(
                    ["ssh-add", "-L"],
                    env={"SSH_AUTH_SOCK": forwarded.socket},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()
            )
        assert listed == [second.public_line]
        assert not Path(forwarded.socket).exists()
        third = AgentKeySource(Settings(agent_socket=str(agent.socket), agent_key="third"))
        with pytest.raises(AgentError, match="no key in the ssh-agent matches"):
            third.forward(workdir).__enter__()
    finally:
        agent.stop()


def test_unreadable_key_file_names_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key file the OS refuses to read gives the OS's reason (root ignores modes, so
    the refusal is simulated at the read)."""
    key = make_key(tmp_path, "locked")

    def refuse(self: Path, *args: object, **kwargs: object) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(KeySourceError) as info:
        FileKeySource(Settings(key_file=str(key.private))).forward(tmp_path).__enter__()
    assert str(info.value) == (
        f"cannot read key file {key.private} (Permission denied): check the file's permissions"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="Windows keeps no Unix mode bits")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_may_read_is_refused_as_ssh_does(tmp_path: Path, mode: int) -> None:
    """A key file of the user's that the group or anyone may read is refused before
    a byte of it is used, with the chmod that fixes it; 0600 and 0400 load."""
    key = make_key(tmp_path, "loose")
    key.private.chmod(mode)
    source = FileKeySource(Settings(key_file=str(key.private)))
    with pytest.raises(KeySourceError) as info:
        source.check()
    assert str(info.value) == (
        f"key file {key.private} can be read by other users (mode {mode:o}), so ssh would"
        f" refuse it too: chmod 600 {key.private}"
    )
    for safe in (0o600, 0o400):
        key.private.chmod(safe)
        FileKeySource(Settings(key_file=str(key.private))).check()


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown")
def test_a_key_file_another_user_owns_is_theirs_to_protect(tmp_path: Path) -> None:
    """As with ssh, the mode of a key file another user owns (a mounted secret, a
    deploy key an admin keeps) is not held against the user reading it."""
    key = make_key(tmp_path, "theirs")
    key.private.chmod(0o644)
    os.chown(key.private, 65534, 65534)
    loaded = load_private_key(
        FileKeySource(Settings(key_file=str(key.private)))._read(), str(key.private), _never
    )
    assert loaded.fingerprint == _fingerprint(Path(f"{key.private}.pub"))


def test_passphrase_that_is_not_utf8_stores_nothing(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """A key whose passphrase is not UTF-8 is refused before the key is stored, without
    showing the passphrase's bytes."""
    phrase = "\u00e9t\u00e9".encode("latin-1")
    private = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(phrase),
    )
    with pytest.raises(KeySourceError) as raised:
        store_key_entries(
            Settings(), private, "key file latin", lambda: phrase, passphrase_only=False
        )
    assert "passphrase of the key file latin is not UTF-8 text" in raised.value.line()
    assert "xe9" not in raised.value.line()
    assert memory_keyring.store == {}


def test_agent_key_takes_a_key_with_its_certificate(tmp_path: Path) -> None:
    """A key and its certificate in the agent share the key's fingerprint and
    comment: agent_key names the pair (by either), and both reach the build; two
    different keys with one comment are still refused as ambiguous."""
    agent = Agent(tmp_path / "agent").start()
    key, other = make_key(tmp_path, "deploy"), make_key(tmp_path, "other")
    ca = make_key(tmp_path / "ca", "ca")
    run("ssh-keygen", "-q", "-s", str(ca.private), "-I", "deploy", f"{key.private}.pub")
    try:
        agent.add(key)  # ssh-add loads deploy-cert.pub with it
        agent.add(other)
        for wanted in ("deploy", key.fingerprint):
            source = AgentKeySource(Settings(agent_socket=str(agent.socket), agent_key=wanted))
            workdir = tmp_path / f"work-{len(wanted)}"
            workdir.mkdir(mode=0o700)
            with source.forward(workdir) as forwarded:
                listed = _listed(forwarded.socket).strip().splitlines()
            assert sorted(line.split()[-1] for line in listed) == ["(ED25519)", "(ED25519-CERT)"]
            assert {line.split()[1] for line in listed} == {key.fingerprint}
            assert forwarded.fingerprint == key.fingerprint
        twin = make_key(tmp_path / "twin", "deploy")  # another key, the same comment
        agent.add(twin)
        ambiguous = AgentKeySource(Settings(agent_socket=str(agent.socket), agent_key="deploy"))
        with pytest.raises(AgentError, match="more than one key in the ssh-agent matches"):
            ambiguous.check()
    finally:
        agent.stop()


def _sk_key(armour: list[str]) -> bytes:
    """An OpenSSH private key of a FIDO security key's type, made here in the
    first and last lines of ``armour`` (an OpenSSH key's): its key handle is
    meaningless, as no token is needed to read the file's header."""
    import base64
    import struct

    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    public = string(b"sk-ssh-ed25519@openssh.com") + string(b"\x01" * 32) + string(b"ssh:")
    private = struct.pack(">II", 7, 7) + public + bytes([1]) + string(b"handle") + string(b"")
    private += string(b"token") + bytes(range(1, 8 - len(private + string(b"token")) % 8 + 1))
    raw = b"openssh-key-v1\0" + string(b"none") * 2 + string(b"") + struct.pack(">I", 1)
    body = base64.b64encode(raw + string(public) + string(private)).decode()
    lines = [body[i : i + 70] for i in range(0, len(body), 70)]
    return ("\n".join([armour[0], *lines, armour[-1]]) + "\n").encode()


@pytest.mark.parametrize("cipher", ["3des-cbc", "aes128-ctr", "chacha20-poly1305@openssh.com"])
def test_a_key_in_a_cipher_the_tool_cannot_decrypt_says_what_works(
    tmp_path: Path, cipher: str
) -> None:
    """OpenSSH keys encrypted with a cipher cryptography lacks: the message names
    the cipher and the ways that work, before any passphrase is asked."""
    key = tmp_path / "key"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "pass", "-Z", cipher, "-f", str(key))
    asked: list[bool] = []
    with pytest.raises(KeySourceError) as info:
        load_private_key(key.read_bytes(), "key file K", lambda: asked.append(True) or b"pass")
    assert (
        info.value.message
        == f"the key file K is encrypted with {cipher}, which this tool cannot decrypt"
    )
    assert "ssh-keygen -p -Z aes256-ctr" in info.value.hint
    assert "key_source=agent" in info.value.hint
    assert asked == []


def test_a_fido_key_points_to_the_agent(tmp_path: Path) -> None:
    """A FIDO (sk-) key signs only with its token: the agent is the way."""
    armour = make_key(tmp_path, "armour").private_bytes.decode().splitlines()
    with pytest.raises(KeySourceError) as info:
        load_private_key(_sk_key(armour), "key file K", lambda: b"")
    assert "is a FIDO security-key key (sk-ssh-ed25519@openssh.com)" in info.value.message
    assert "key_source=agent" in info.value.hint


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_a_key_file_travels_with_the_certificate_beside_it(tmp_path: Path, kind: str) -> None:
    """KEY-cert.pub beside a key file, as ssh finds it, reaches the ephemeral agent
    with the key (one fingerprint, both listed), and the agent signs with it:
    `ssh-add -T` checks a signature against the certificate."""
    key = make_key(tmp_path / "keys", "deploy", passphrase="pass phrase", kind=kind)
    ca = make_key(tmp_path / "ca", "ca")
    run(
        "ssh-keygen", "-q", "-s", str(ca.private), "-I", "deploy", "-n", "git", f"{key.private}.pub"
    )
    certificate = Path(f"{key.private}-cert.pub")
    source = FileKeySource(
        Settings(key_source="file", key_file=str(key.private), passphrase_source="prompt")
    )
    source._prompt = lambda label: key.passphrase.encode()  # type: ignore[method-assign]
    source.check()
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    with source.forward(workdir) as forwarded:
        listed = _listed(forwarded.socket).strip().splitlines()
        signs = subprocess.run(
            ["ssh-add", "-T", str(certificate)],
            env={"SSH_AUTH_SOCK": forwarded.socket},
            capture_output=True,
            text=True,
            check=False,
        )
        public = subprocess.run(
            ["ssh-add", "-L"], env={"SSH_AUTH_SOCK": forwarded.socket}, capture_output=True
        )
    assert signs.returncode == 0, signs.stderr
    assert {line.split()[1] for line in listed} == {key.fingerprint} == {forwarded.fingerprint}
    assert sorted(line.split()[-1] for line in listed) == sorted(
        [f"({kind.upper()})", f"({kind.upper()}-CERT)"]
    )
    assert certificate.read_text().split()[1].encode() in public.stdout


def test_a_certificate_leaves_the_agent_with_its_key(tmp_path: Path) -> None:
    """The certificate is added with the key's lifetime: when it ends, the agent
    holds neither."""
    import time

    key = make_key(tmp_path / "keys", "deploy")
    ca = make_key(tmp_path / "ca", "ca")
    run("ssh-keygen", "-q", "-s", str(ca.private), "-I", "deploy", f"{key.private}.pub")
    # Long enough for the first listing to come before it ends on a loaded machine.
    source = FileKeySource(Settings(key_source="file", key_file=str(key.private), key_lifetime=4))
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    with source.forward(workdir) as forwarded:
        assert len(_listed(forwarded.socket).strip().splitlines()) == 2
        deadline = time.monotonic() + 30
        while "CERT" in _listed_or_empty(forwarded.socket) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _listed_or_empty(forwarded.socket) == ""


def _listed_or_empty(socket: str) -> str:
    """`ssh-add -l` on ``socket``, or "" when the agent holds no identity (exit 1)."""
    done = subprocess.run(
        ["ssh-add", "-l"], env={"SSH_AUTH_SOCK": socket}, capture_output=True, text=True
    )
    return done.stdout if done.returncode == 0 else ""


def test_a_certificate_beside_a_key_file_must_be_its_own(tmp_path: Path) -> None:
    """A certificate of another key, or a file that is no certificate, beside the
    key file is one line naming it, not an agent holding a useless pair."""
    key = make_key(tmp_path / "keys", "deploy")
    other = make_key(tmp_path / "other", "other")
    ca = make_key(tmp_path / "ca", "ca")
    run("ssh-keygen", "-q", "-s", str(ca.private), "-I", "other", f"{other.private}.pub")
    certificate = Path(f"{key.private}-cert.pub")
    certificate.write_text(Path(f"{other.private}-cert.pub").read_text())
    source = FileKeySource(Settings(key_source="file", key_file=str(key.private)))
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o700)
    source.check()  # a certificate, but whose shows only once the key is read
    with pytest.raises(KeySourceError) as raised, source.forward(workdir):
        pass
    assert raised.value.message == (
        f"the certificate {certificate} certifies another key than the key file {key.private}"
    )
    certificate.write_text(key.public_line + "\n")  # the public key, not a certificate
    with pytest.raises(KeySourceError, match=r"-cert\.pub is not an OpenSSH certificate"):
        FileKeySource(Settings(key_source="file", key_file=str(key.private))).check()
    assert list(workdir.iterdir()) == []


def test_a_certificate_with_any_comment_is_taken(tmp_path: Path) -> None:
    """The comment after a certificate's blob is free text, as ssh takes it."""
    key = make_key(tmp_path / "keys", "deploy")
    public = Path(f"{key.private}.pub")
    public.write_text(key.public_line.rsplit(" ", 1)[0] + " jos\u00e9@laptop\n", encoding="utf-8")
    ca = make_key(tmp_path / "ca", "ca")
    run("ssh-keygen", "-q", "-s", str(ca.private), "-I", "deploy", str(public))
    found = certificate_beside(key.private)
    assert found is not None
    assert found[0] == Path(f"{key.private}-cert.pub")


def test_a_certificate_of_a_key_type_it_cannot_forward_is_one_line(tmp_path: Path) -> None:
    """A DSA key's certificate, which the tool cannot add to its agent, is refused
    by check(), before the engine is asked, with the agent as the way out."""
    import base64
    import struct

    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    kind = b"ssh-dss-cert-v01@openssh.com"
    blob = string(kind) + string(b"nonce") + b"".join(string(bytes([n])) for n in range(4))
    key = make_key(tmp_path / "keys", "deploy")
    Path(f"{key.private}-cert.pub").write_text(
        f"{kind.decode()} {base64.b64encode(blob).decode()}\n"
    )
    with pytest.raises(KeySourceError) as raised:
        FileKeySource(Settings(key_source="file", key_file=str(key.private))).check()
    assert "is of a ssh-dss key, which the tool cannot forward with its certificate" in str(
        raised.value
    )
    assert "key_source=agent" in raised.value.hint


def test_a_key_files_keyring_passphrase_is_checked_before_the_build(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    """With passphrase_source=keyring, `check` (which doctor runs too) says what the
    build would stop on: no passphrase stored for the encrypted key, or one that
    does not open it; the right one passes."""
    key = make_key(tmp_path, "enc", passphrase="open sesame")
    settings = Settings(key_source="file", key_file=str(key.private), passphrase_source="keyring")
    with pytest.raises(KeySourceError, match="is encrypted and the keyring has no passphrase"):
        FileKeySource(settings).check()
    entry = ("securebuild-tasks", passphrase_name(settings))
    memory_keyring.store[entry] = "open barley"
    with pytest.raises(KeySourceError) as wrong:
        FileKeySource(settings).check()
    assert wrong.value.line() == (
        f"the passphrase in the keyring entry securebuild-tasks/{entry[1]} does not open the"
        f" key file {key.private}: store this key's with `inv store-key --key-file PATH"
        " --passphrase-only`, or set passphrase_source=prompt"
    )
    memory_keyring.store[entry] = "open sesame"
    FileKeySource(settings).check()
    # Asked only of encrypted keys: an unencrypted one needs nothing stored.
    plain = make_key(tmp_path, "plain")
    memory_keyring.store.clear()
    FileKeySource(Settings(key_file=str(plain.private), passphrase_source="keyring")).check()
