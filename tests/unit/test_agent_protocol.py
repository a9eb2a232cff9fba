"""Tests for securebuild_tasks.agent_protocol against a real OpenSSH ssh-agent."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from securebuild_tasks.agent_protocol import (
    AgentProtocolError,
    FilteringAgentProxy,
    Identity,
    list_identities,
)

# A crash in a proxy thread must fail the test, not just print a traceback.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

FAILURE = b"\x05"


@dataclass
class Agent:
    """A running ssh-agent holding alice and bob; carol exists on disk but is not loaded."""

    socket: str
    keys: dict[str, Path]  # private key files
    # .pub copies in a directory without private keys: ssh-keygen -Y sign must use the agent.
    pubs: dict[str, Path]
    tmp: Path


def _env(sock: str) -> dict[str, str]:
    drop = {"SSH_AGENT_PID", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["SSH_AUTH_SOCK"] = sock
    return env


def _run(args: list[str], sock: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    return subprocess.run(
        args, env=_env(sock), capture_output=True, text=True, timeout=30, check=False, **kwargs
    )


def _ssh_add_list(sock: str) -> list[tuple[str, str]]:
    """(fingerprint, comment) pairs as `ssh-add -l -E sha256` prints them."""
    result = _run(["ssh-add", "-l", "-E", "sha256"], sock)
    assert result.returncode == 0, result.stderr
    pairs = []
    for line in result.stdout.splitlines():
        parts = line.split()  # "256 SHA256:... comment (ED25519)"
        pairs.append((parts[1], " ".join(parts[2:-1])))
    return pairs


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _recv_frame(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a full reply"
        data += chunk
    return data[4:]


def _request(path: str, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(_frame(payload))
        return _recv_frame(sock)


def _peer_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """Run `ssh-agent -D` in tmp_path with two loaded ed25519 keys."""
    for tool in ("ssh-agent", "ssh-add", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed; these tests need a real OpenSSH agent")
    sock_dir = tmp_path / "agent"
    sock_dir.mkdir(mode=0o700)
    sock = str(sock_dir / "agent.sock")
    proc = subprocess.Popen(
        ["ssh-agent", "-D", "-a", sock],
        env=_env(sock),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert proc.poll() is None, "ssh-agent exited at startup"
            assert time.monotonic() < deadline, "ssh-agent did not create its socket"
            time.sleep(0.02)
        (tmp_path / "keys").mkdir()
        (tmp_path / "pubs").mkdir()
        keys, pubs = {}, {}
        for name in ("alice", "bob", "carol"):
            keys[name] = tmp_path / "keys" / name
            keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test"]
            made = _run([*keygen, "-f", str(keys[name])], sock)
            assert made.returncode == 0, made.stderr
            pubs[name] = tmp_path / "pubs" / f"{name}.pub"
            shutil.copy(f"{keys[name]}.pub", pubs[name])
        added = _run(["ssh-add", str(keys["alice"]), str(keys["bob"])], sock)
        assert added.returncode == 0, added.stderr
        yield Agent(sock, keys, pubs, tmp_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _identity(agent: Agent, name: str) -> Identity:
    return next(i for i in list_identities(agent.socket) if i.comment == f"{name}@test")


@pytest.fixture
def proxy(agent: Agent) -> Iterator[FilteringAgentProxy]:
    """A started proxy in a 0700 directory that allows only alice's key."""
    proxy_dir = agent.tmp / "proxy"
    proxy_dir.mkdir(mode=0o700)
    server = FilteringAgentProxy(
        agent.socket, str(proxy_dir / "agent.sock"), _identity(agent, "alice")
    )
    server.start()
    yield server
    server.close()


def _sign(agent: Agent, sock: str, name: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    message = agent.tmp / f"message-{name}.txt"
    message.write_text("build context digest\n")
    result = _run(
        ["ssh-keygen", "-Y", "sign", "-f", str(agent.pubs[name]), "-n", "file", str(message)], sock
    )
    return result, Path(f"{message}.sig")


def test_list_identities_matches_ssh_add(agent: Agent) -> None:
    """list_identities reports both keys with the fingerprints and comments ssh-add prints."""
    identities = list_identities(agent.socket)
    assert sorted((i.fingerprint, i.comment) for i in identities) == sorted(
        _ssh_add_list(agent.socket)
    )
    assert sorted(i.comment for i in identities) == ["alice@test", "bob@test"]
    assert {i.key_type for i in identities} == {"ssh-ed25519"}


def test_identity_matches_fingerprint_or_comment(agent: Agent) -> None:
    """Identity.matches accepts its own fingerprint (with or without prefix) and comment only."""
    alice, bob = _identity(agent, "alice"), _identity(agent, "bob")
    assert alice.fingerprint.startswith("SHA256:")
    assert alice.matches(alice.fingerprint)
    assert alice.matches(alice.fingerprint.removeprefix("SHA256:"))
    assert alice.matches("alice@test")
    assert not alice.matches(bob.fingerprint)
    assert not alice.matches(bob.fingerprint.removeprefix("SHA256:"))
    assert not alice.matches("bob@test")
    assert not alice.matches("alice")
    assert not alice.matches("")


def test_proxy_lists_only_allowed_key(agent: Agent, proxy: FilteringAgentProxy) -> None:
    """`ssh-add -l` through the proxy shows exactly the allowed key."""
    alice = _identity(agent, "alice")
    assert _ssh_add_list(proxy.socket_path) == [(alice.fingerprint, "alice@test")]
    assert list_identities(proxy.socket_path) == [alice]


def test_proxy_signs_with_allowed_key(agent: Agent, proxy: FilteringAgentProxy) -> None:
    """Signing through the proxy with the allowed key works and the signature verifies."""
    result, signature = _sign(agent, proxy.socket_path, "alice")
    assert result.returncode == 0, result.stderr
    assert signature.is_file()
    public = agent.pubs["alice"].read_text().split()
    signers = agent.tmp / "allowed_signers"
    signers.write_text(f"alice@test {public[0]} {public[1]}\n")
    verify = ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", "alice@test", "-n", "file"]
    verified = _run(
        [*verify, "-s", str(signature)],
        proxy.socket_path,
        input="build context digest\n",
    )
    assert verified.returncode == 0, verified.stderr


def test_proxy_refuses_to_sign_with_other_key(agent: Agent, proxy: FilteringAgentProxy) -> None:
    """Signing with a key the proxy does not allow fails, though the upstream agent could sign."""
    upstream_result, upstream_sig = _sign(agent, agent.socket, "bob")
    assert upstream_result.returncode == 0, upstream_result.stderr  # control: the key works
    upstream_sig.unlink()
    result, signature = _sign(agent, proxy.socket_path, "bob")
    assert result.returncode != 0
    assert not signature.exists()


def test_proxy_answers_failure_to_sign_requests_for_other_keys(
    agent: Agent, proxy: FilteringAgentProxy
) -> None:
    """A raw SIGN_REQUEST for another key, or a malformed one, is answered with FAILURE."""
    bob = _identity(agent, "bob")
    request = bytes([13]) + _string(bob.blob) + _string(b"data") + struct.pack(">I", 0)
    assert _request(proxy.socket_path, request) == FAILURE
    alice = _identity(agent, "alice")
    assert _request(proxy.socket_path, bytes([13]) + _string(alice.blob)) == FAILURE
    good = bytes([13]) + _string(alice.blob) + _string(b"data") + struct.pack(">I", 0)
    assert _request(proxy.socket_path, good)[0] == 14  # SSH_AGENT_SIGN_RESPONSE


def test_proxy_refuses_to_add_or_remove_keys(agent: Agent, proxy: FilteringAgentProxy) -> None:
    """ssh-add and ssh-add -D/-d through the proxy fail and leave the upstream agent unchanged."""
    before = list_identities(agent.socket)
    assert _run(["ssh-add", str(agent.keys["carol"])], proxy.socket_path).returncode != 0
    assert _run(["ssh-add", "-D"], proxy.socket_path).returncode != 0
    assert _run(["ssh-add", "-d", str(agent.pubs["alice"])], proxy.socket_path).returncode != 0
    assert list_identities(agent.socket) == before
    assert len(before) == 2


@pytest.mark.parametrize(
    "payload",
    [
        bytes([17]) + _string(b"ssh-ed25519"),  # ADD_IDENTITY
        bytes([18]) + _string(b"blob"),  # REMOVE_IDENTITY
        bytes([19]),  # REMOVE_ALL_IDENTITIES
        bytes([20]) + _string(b"/usr/lib/pkcs11.so") + _string(b""),  # ADD_SMARTCARD_KEY
        bytes([22]) + _string(b"secret"),  # LOCK
        bytes([23]) + _string(b"secret"),  # UNLOCK
        bytes([27]) + _string(b"query"),  # EXTENSION query
        bytes([27]) + _string(b"session-bind@openssh.com") + _string(b"x") * 3 + b"\x00",
        bytes([200]),  # unknown type
    ],
    ids=["add", "remove", "remove-all", "smartcard", "lock", "unlock", "query", "bind", "unknown"],
)
def test_proxy_answers_failure_to_other_messages(
    agent: Agent, proxy: FilteringAgentProxy, payload: bytes
) -> None:
    """Every message other than list/sign is answered with FAILURE and never reaches upstream."""
    assert _request(proxy.socket_path, payload) == FAILURE
    assert len(list_identities(agent.socket)) == 2  # not emptied, not locked


def test_socket_mode_and_close(proxy: FilteringAgentProxy) -> None:
    """The proxy socket is 0600, and close() removes it so connecting fails."""
    path = proxy.socket_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    proxy.close()
    assert not os.path.exists(path)
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
        pytest.raises(FileNotFoundError),
    ):
        sock.connect(path)
    proxy.close()  # idempotent
    assert not os.path.exists(path)


def test_close_drops_connected_clients_promptly(agent: Agent, proxy: FilteringAgentProxy) -> None:
    """close() ends open client connections at once instead of waiting for them."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(proxy.socket_path)
        sock.sendall(_frame(bytes([11])))
        assert _recv_frame(sock)[0] == 12  # the connection is being served
        started = time.monotonic()
        proxy.close()
        assert time.monotonic() - started < 2
        assert _peer_closed(sock)


def test_context_manager_starts_and_cleans_up(agent: Agent) -> None:
    """Using the proxy as a context manager serves inside the block and removes the socket after."""
    path = agent.tmp / "ctx" / "agent.sock"
    path.parent.mkdir(mode=0o700)
    with FilteringAgentProxy(agent.socket, str(path), _identity(agent, "bob")) as server:
        assert [i.comment for i in list_identities(server.socket_path)] == ["bob@test"]
    assert not path.exists()


def test_list_identities_missing_socket_names_path(tmp_path: Path) -> None:
    """list_identities on a missing socket raises AgentProtocolError naming the path."""
    missing = str(tmp_path / "no-such-agent.sock")
    with pytest.raises(AgentProtocolError, match="cannot reach the ssh-agent") as caught:
        list_identities(missing)
    assert missing in str(caught.value)


def test_oversize_length_closes_connection_only(agent: Agent, proxy: FilteringAgentProxy) -> None:
    """An oversize length prefix gets that connection closed; the next client is still served."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(proxy.socket_path)
        sock.sendall(struct.pack(">I", 256 * 1024 + 1) + b"\x0b" * 16)
        assert _peer_closed(sock)
    assert list_identities(proxy.socket_path) == [_identity(agent, "alice")]


def test_message_split_across_writes_is_reassembled(
    agent: Agent, proxy: FilteringAgentProxy
) -> None:
    """A request that arrives one byte at a time is still answered correctly."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(proxy.socket_path)
        for byte in _frame(bytes([11])):
            sock.sendall(bytes([byte]))
            time.sleep(0.02)
        reply = _recv_frame(sock)
    assert reply[:5] == bytes([12]) + struct.pack(">I", 1)
    assert _identity(agent, "alice").blob in reply


def test_unreachable_upstream_closes_client_connection(agent: Agent) -> None:
    """If the upstream agent is unreachable the client connection closes and the proxy survives."""
    alice = _identity(agent, "alice")
    path = agent.tmp / "lost" / "agent.sock"
    path.parent.mkdir(mode=0o700)
    with FilteringAgentProxy(str(agent.tmp / "gone.sock"), str(path), alice) as server:
        for _ in range(2):  # the second client proves the server is still accepting
            with pytest.raises(AgentProtocolError, match="closed the connection"):
                list_identities(server.socket_path)


def test_a_burst_of_clients_is_taken_as_ssh_agent_takes_it(
    agent: Agent, proxy: FilteringAgentProxy
) -> None:
    """Parallel git fetches open many connections at once, and Go's dialer (docker's
    --ssh forwarder) gives up on a full backlog rather than waiting: none may be refused,
    and each is then served."""
    clients = []
    try:
        for _ in range(64):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            clients.append(client)
            client.connect(proxy.socket_path)  # BlockingIOError when the backlog is full
        for client in clients:
            client.setblocking(True)
            client.settimeout(10)
            client.sendall(_frame(b"\x0b"))  # REQUEST_IDENTITIES
            assert _recv_frame(client)[:1] == b"\x0c"  # IDENTITIES_ANSWER
    finally:
        for client in clients:
            client.close()


def test_a_proxy_that_allows_no_key_lists_none_and_signs_nothing(
    agent: Agent, tmp_path: Path
) -> None:
    """The keyless agent of builds that fetch nothing over SSH: no identity, every
    sign request (for a key the upstream agent holds, too) and every other message
    answered with FAILURE, and the upstream agent never asked."""
    path = str(tmp_path / "keyless.sock")
    alice = _identity(agent, "alice")
    sign = bytes([13]) + _string(alice.blob) + _string(b"data") + struct.pack(">I", 0)
    with FilteringAgentProxy(agent.socket, path, ()):
        assert list_identities(path) == []
        assert _request(path, sign) == FAILURE
        assert _request(path, bytes([19])) == FAILURE  # remove all identities
        result, signature = _sign(agent, path, "alice")
        assert result.returncode != 0
        assert not signature.exists()
    with FilteringAgentProxy(str(tmp_path / "no-upstream.sock"), path, ()):
        assert list_identities(path) == []  # it never connects upstream


def _certify(agent: Agent, name: str) -> Path:
    """Sign ``name``'s key with a CA of the test's own; ssh-add then loads the
    certificate next to the key, as it does for any KEY-cert.pub."""
    ca = agent.tmp / "ca"
    if not ca.exists():
        made = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], agent.socket)
        assert made.returncode == 0, made.stderr
    signed = _run(
        [
            "ssh-keygen",
            "-q",
            "-s",
            str(ca),
            "-I",
            f"{name}-id",
            "-n",
            "git",
            f"{agent.keys[name]}.pub",
        ],
        agent.socket,
    )
    assert signed.returncode == 0, signed.stderr
    added = _run(["ssh-add", str(agent.keys[name])], agent.socket)
    assert added.returncode == 0, added.stderr
    return Path(f"{agent.keys[name]}-cert.pub")


def test_a_certificate_has_its_keys_fingerprint_and_travels_with_it(
    agent: Agent, tmp_path: Path
) -> None:
    """OpenSSH shows a certificate by its key's fingerprint (ssh-keygen -l, ssh-add
    -l): so does the tool. A proxy allowed the key and its certificate lists both
    and signs with the key; bob's key stays hidden."""
    cert = _certify(agent, "alice")
    identities = list_identities(agent.socket)
    listed = _run(["ssh-keygen", "-l", "-f", str(cert)], agent.socket).stdout.split()[1]
    alices = [i for i in identities if i.comment == "alice@test"]
    assert sorted(i.is_certificate for i in alices) == [False, True]
    assert {i.fingerprint for i in alices} == {listed}
    bob = _identity(agent, "bob")
    assert bob.fingerprint != listed
    assert not bob.is_certificate

    path = str(tmp_path / "certs.sock")
    with FilteringAgentProxy(agent.socket, path, alices):
        shown = list_identities(path)
        assert sorted(i.blob for i in shown) == sorted(i.blob for i in alices)
        result, signature = _sign(agent, path, "alice")
        assert result.returncode == 0, result.stderr
        assert signature.exists()
        refused, _ = _sign(agent, path, "bob")
        assert refused.returncode != 0


SPIN_CHECK = r"""
import os, resource, socket, sys, time
from securebuild_tasks.agent_protocol import FilteringAgentProxy
path = sys.argv[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
proxy = FilteringAgentProxy("", path, ())
proxy.start()
clients = []
try:
    while len(clients) < 200:  # each served client holds one descriptor of the proxy's
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        clients.append(client)
except OSError:
    pass
time.sleep(0.2)
cpu, wall = time.process_time(), time.monotonic()
time.sleep(1.0)
print(f"{(time.process_time() - cpu) / (time.monotonic() - wall):.3f}")
for client in clients:
    client.close()
proxy.close()
"""


def test_out_of_descriptors_the_proxy_waits_rather_than_spins(tmp_path: Path) -> None:
    """With every descriptor in use, clients wait in the listen queue: the accept
    loop backs off instead of retrying at full speed (it used a whole CPU)."""
    done = subprocess.run(
        [sys.executable, "-c", SPIN_CHECK, str(tmp_path / "p.sock")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 0.5  # share of one CPU used while out of descriptors
