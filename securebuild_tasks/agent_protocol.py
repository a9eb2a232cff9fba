"""Minimal OpenSSH agent protocol client and read-only filtering proxy.

Implements the small part of draft-miller-ssh-agent we need, over Unix sockets.
It is hand-written because no maintained library provides an agent *server or
proxy*: when a user names one key of their ssh-agent, the Docker BuildKit build
is given our proxy socket (``--ssh default=SOCK``) so that it can see and use
ONLY that key, never every key the user's agent holds.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

SSH_AGENT_FAILURE = 5
SSH_AGENTC_REQUEST_IDENTITIES = 11
SSH_AGENT_IDENTITIES_ANSWER = 12
SSH_AGENTC_SIGN_REQUEST = 13
SSH_AGENT_SIGN_RESPONSE = 14
SSH_AGENT_SUCCESS = 6
SSH2_AGENTC_ADD_ID_CONSTRAINED = 25
SSH_AGENT_CONSTRAIN_LIFETIME = 1

# Same bound as OpenSSH's own agent; anything larger is hostile or broken.
MAX_MESSAGE_LENGTH = 256 * 1024
# Generous, because a key added with `ssh-add -c` waits for a human to confirm.
_UPSTREAM_TIMEOUT = 60.0
_FAILURE_REPLY = bytes([SSH_AGENT_FAILURE])


class AgentProtocolError(Exception):
    """A malformed agent message or an unreachable agent (never includes key material)."""


class _Reader:
    """Bounds-checked reader for the SSH wire encoding."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise AgentProtocolError("truncated ssh-agent message")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def byte(self) -> int:
        return self._take(1)[0]

    def uint32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def string(self) -> bytes:
        return self._take(self.uint32())

    def expect_end(self) -> None:
        if self._pos != len(self._data):
            raise AgentProtocolError("trailing bytes in ssh-agent message")


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


_CERT_SUFFIX = "-cert-v01@openssh.com"
#: How many public-key fields follow the nonce in each OpenSSH certificate type
#: (PROTOCOL.certkeys), the same fields, in the same order, as the plain key's.
_CERT_KEY_FIELDS = {
    f"ssh-rsa{_CERT_SUFFIX}": 2,  # e, n
    f"ssh-dss{_CERT_SUFFIX}": 4,  # p, q, g, y
    f"ecdsa-sha2-nistp256{_CERT_SUFFIX}": 2,  # curve, public point
    f"ecdsa-sha2-nistp384{_CERT_SUFFIX}": 2,
    f"ecdsa-sha2-nistp521{_CERT_SUFFIX}": 2,
    f"ssh-ed25519{_CERT_SUFFIX}": 1,  # public key
    f"sk-ecdsa-sha2-nistp256@openssh.com{_CERT_SUFFIX}": 3,  # curve, point, application
    f"sk-ssh-ed25519@openssh.com{_CERT_SUFFIX}": 2,  # public key, application
}


@dataclass(frozen=True)
class Identity:
    """One public key held by an agent, as reported by REQUEST_IDENTITIES."""

    blob: bytes
    comment: str

    @property
    def key_type(self) -> str:
        """The key's algorithm name from the blob, e.g. ``ssh-ed25519``."""
        try:
            return _Reader(self.blob).string().decode("ascii")
        except UnicodeDecodeError:
            raise AgentProtocolError("malformed public key blob") from None

    @property
    def key_blob(self) -> bytes:
        """The public key itself: for an OpenSSH certificate, the key it certifies."""
        key_type = self.key_type
        fields = _CERT_KEY_FIELDS.get(key_type)
        if fields is None:
            return self.blob
        reader = _Reader(self.blob)
        reader.string()  # the certificate's type
        reader.string()  # its nonce
        plain = key_type.removesuffix(_CERT_SUFFIX).encode("ascii")
        return _string(plain) + b"".join(_string(reader.string()) for _ in range(fields))

    @property
    def is_certificate(self) -> bool:
        """Whether this identity is an OpenSSH certificate."""
        return self.key_type.endswith(_CERT_SUFFIX)

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint in the format ``ssh-add -l`` prints: a
        certificate's is its key's, as OpenSSH shows it."""
        digest = base64.b64encode(hashlib.sha256(self.key_blob).digest()).decode("ascii")
        return "SHA256:" + digest.rstrip("=")

    def matches(self, selector: str) -> bool:
        """Whether ``selector`` names this key by fingerprint (prefix optional) or exact comment."""
        if not selector:  # an empty selector must not match a key with an empty comment
            return False
        fingerprint = self.fingerprint
        return selector in (fingerprint, fingerprint.removeprefix("SHA256:"), self.comment)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes; stream sockets may deliver a message in pieces."""
    chunks: list[bytes] = []
    while n > 0:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            raise AgentProtocolError("connection closed in the middle of a message")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_message(sock: socket.socket) -> bytes | None:
    """Read one framed message; None if the peer closed cleanly between messages."""
    first = sock.recv(4)
    if not first:
        return None
    header = first + _recv_exact(sock, 4 - len(first))
    (length,) = struct.unpack(">I", header)
    if length == 0 or length > MAX_MESSAGE_LENGTH:
        raise AgentProtocolError(f"invalid ssh-agent message length {length}")
    return _recv_exact(sock, length)


def _send_message(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def _parse_identities(payload: bytes) -> list[tuple[bytes, bytes]]:
    """Parse an IDENTITIES_ANSWER into raw (blob, comment) pairs."""
    reader = _Reader(payload)
    if reader.byte() != SSH_AGENT_IDENTITIES_ANSWER:
        raise AgentProtocolError("ssh-agent refused to list identities")
    count = reader.uint32()
    keys = [(reader.string(), reader.string()) for _ in range(count)]
    reader.expect_end()
    return keys


def _encode_identities(keys: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_string(blob) + _string(comment) for blob, comment in keys)
    return bytes([SSH_AGENT_IDENTITIES_ANSWER]) + struct.pack(">I", len(keys)) + body


def _sign_request_key(payload: bytes) -> bytes:
    """Return the key blob of a SIGN_REQUEST, checking the whole message is well-formed."""
    reader = _Reader(payload)
    reader.byte()
    blob = reader.string()
    reader.string()  # data to sign
    reader.uint32()  # flags
    reader.expect_end()
    return blob


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # A blocking connect waits for room in a busy agent's queue, where a
        # socket with a timeout (non-blocking inside) would fail at once with
        # EAGAIN; the send timeout bounds that wait.
        seconds = int(timeout)
        micros = int((timeout - seconds) * 1e6)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, micros))
        sock.connect(path)
        sock.settimeout(timeout)
    except OSError as exc:
        sock.close()
        raise AgentProtocolError(
            f"cannot reach the ssh-agent at {path}: {exc.strerror or exc}"
        ) from exc
    return sock


def list_identities(socket_path: str, timeout: float = 5.0) -> list[Identity]:
    """Return the identities the agent at ``socket_path`` holds, in the agent's order."""
    with _connect(socket_path, timeout) as sock:
        try:
            _send_message(sock, bytes([SSH_AGENTC_REQUEST_IDENTITIES]))
            reply = _read_message(sock)
        except OSError as exc:
            raise AgentProtocolError(
                f"ssh-agent at {socket_path} failed: {exc.strerror or exc}"
            ) from exc
    if reply is None:
        raise AgentProtocolError(f"ssh-agent at {socket_path} closed the connection")
    return [
        Identity(blob, comment.decode("utf-8", errors="replace"))
        for blob, comment in _parse_identities(reply)
    ]


def _mpint(value: int) -> bytes:
    """An SSH mpint of a non-negative ``value``: big-endian, a zero byte first when
    the top bit is set (RFC 4251 section 5)."""
    return _string(value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b"")


def _certified_key_fields(private_key: object) -> bytes:
    """The private fields an agent takes after a certificate, per key type, as
    OpenSSH serialises them (the public fields are in the certificate)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        public = private_key.public_key().public_bytes_raw()
        return _string(public) + _string(private_key.private_bytes_raw() + public)
    if isinstance(private_key, rsa.RSAPrivateKey):
        numbers = private_key.private_numbers()
        return b"".join(map(_mpint, (numbers.d, numbers.iqmp, numbers.p, numbers.q)))
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return _mpint(private_key.private_numbers().private_value)
    raise AgentProtocolError("the key's type cannot carry an OpenSSH certificate here")


def add_certificate(
    socket_path: str, certificate: bytes, private_key: object, lifetime: int, comment: str = ""
) -> None:
    """Add ``private_key`` (a `cryptography` key) with its OpenSSH ``certificate``
    to the agent at ``socket_path``, for ``lifetime`` seconds.

    ssh-add loads a certificate only from a file beside its key file, and the
    tool never writes a key to a file: the request (draft-miller-ssh-agent,
    ADD_ID_CONSTRAINED with a lifetime) is sent here instead.
    """
    payload = (
        bytes([SSH2_AGENTC_ADD_ID_CONSTRAINED])
        + _string(Identity(certificate, "").key_type.encode("ascii"))
        + _string(certificate)
        + _certified_key_fields(private_key)
        + _string(comment.encode("utf-8"))
        + bytes([SSH_AGENT_CONSTRAIN_LIFETIME])
        + struct.pack(">I", lifetime)
    )
    with _connect(socket_path, 5.0) as sock:
        try:
            _send_message(sock, payload)
            reply = _read_message(sock)
        except OSError as exc:
            raise AgentProtocolError(
                f"ssh-agent at {socket_path} failed: {exc.strerror or exc}"
            ) from exc
    if reply != bytes([SSH_AGENT_SUCCESS]):
        raise AgentProtocolError("the ssh-agent refused the certificate")


class _Connection:
    """One client connection and its lazily opened upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None

    def shutdown(self) -> None:
        # shutdown() (unlike close()) wakes a thread blocked in recv on the socket.
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class FilteringAgentProxy:
    """Listens on `socket_path` and forwards to `upstream` only what concerns `allowed` identity.

    ``allowed`` is one identity, or a key with its certificates. With none it
    is an agent that holds no key: it lists none, signs nothing and never
    connects to ``upstream``.
    """

    def __init__(
        self, upstream: str, socket_path: str, allowed: Identity | Sequence[Identity]
    ) -> None:
        """Prepare the proxy; nothing is bound until start()."""
        self.upstream = upstream
        self.socket_path = socket_path
        chosen = [allowed] if isinstance(allowed, Identity) else list(allowed)
        self.allowed = frozenset(identity.blob for identity in chosen)
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._started = False
        self._closed = False
        self._listener: socket.socket | None = None
        self._socket_id: tuple[int, int] | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the 0600 socket and serve clients in daemon threads (OSError if binding fails)."""
        with self._lock:
            if self._started or self._closed:
                raise RuntimeError("FilteringAgentProxy can only be started once")
            self._started = True
        # A socketpair lets close() wake the accept loop at once, without polling.
        self._wake = socket.socketpair()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.socket_path)
            st = os.stat(self.socket_path)
            self._socket_id = (st.st_dev, st.st_ino)
            # Restrict before listen() so no other user can ever connect.
            os.chmod(self.socket_path, 0o600)
            # As deep a queue as the system allows: parallel git fetches connect
            # at once, and Go's dialer (docker's --ssh forwarder) gives up on a
            # full queue rather than waiting, where ssh-agent's would have room.
            listener.listen(socket.SOMAXCONN)
            listener.setblocking(False)
        except OSError:
            listener.close()
            self.close()
            raise
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener, self._wake[0]), daemon=True
        )
        self._accept_thread.start()

    def close(self) -> None:
        """Stop accepting, drop every client connection and remove the socket file; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = list(self._connections)
        self._unlink_socket()
        if self._wake is not None:
            self._wake[1].send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5.0)
        if self._listener is not None:
            self._listener.close()
        for conn in connections:
            conn.shutdown()
        if self._wake is not None:
            for sock in self._wake:
                sock.close()

    def __enter__(self) -> FilteringAgentProxy:
        """Start the proxy unless already started."""
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the proxy."""
        self.close()

    def _unlink_socket(self) -> None:
        # Only remove the file we created, not one someone else put there since.
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.socket_path)
            if (st.st_dev, st.st_ino) == self._socket_id:
                os.unlink(self.socket_path)

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    try:
                        client, _addr = listener.accept()
                    except OSError as exc:  # e.g. the client already went away
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            # Out of descriptors: the client waits in the queue
                            # while connections end, rather than the loop spinning
                            # (a sleep: a selector would need a descriptor too).
                            time.sleep(0.05)
                        continue
                    client.setblocking(True)
                    conn = _Connection(client)
                    with self._lock:
                        if self._closed:
                            client.close()
                            return
                        self._connections.add(conn)
                    threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: _Connection) -> None:
        # Bad framing, a vanished client or a failing upstream ends only this
        # connection: the server keeps running, and nothing is printed or logged.
        with contextlib.suppress(Exception):
            while (request := _read_message(conn.client)) is not None:
                _send_message(conn.client, self._answer(conn, request))
        with self._lock:
            self._connections.discard(conn)
        conn.shutdown()
        conn.client.close()
        if conn.upstream is not None:
            conn.upstream.close()

    def _answer(self, conn: _Connection, request: bytes) -> bytes:
        """Compute the reply to one client request; the proxy never changes upstream state."""
        if not self.allowed:
            if request[0] == SSH_AGENTC_REQUEST_IDENTITIES:
                return _encode_identities([])
            return _FAILURE_REPLY
        if request[0] == SSH_AGENTC_REQUEST_IDENTITIES:
            reply = self._ask_upstream(conn, bytes([SSH_AGENTC_REQUEST_IDENTITIES]))
            if reply[0] != SSH_AGENT_IDENTITIES_ANSWER:
                return _FAILURE_REPLY
            keys = _parse_identities(reply)
            return _encode_identities([k for k in keys if k[0] in self.allowed])
        if request[0] == SSH_AGENTC_SIGN_REQUEST:
            try:
                blob = _sign_request_key(request)
            except AgentProtocolError:
                return _FAILURE_REPLY
            if blob not in self.allowed:
                return _FAILURE_REPLY  # never reaches upstream
            reply = self._ask_upstream(conn, request)
            if reply[0] not in (SSH_AGENT_SIGN_RESPONSE, SSH_AGENT_FAILURE):
                return _FAILURE_REPLY
            return reply
        # Adding/removing keys, lock/unlock, extensions, smartcards, unknown types.
        return _FAILURE_REPLY

    def _ask_upstream(self, conn: _Connection, request: bytes) -> bytes:
        if self._closed:
            raise AgentProtocolError("proxy is closed")
        if conn.upstream is None:
            conn.upstream = _connect(self.upstream, _UPSTREAM_TIMEOUT)
        _send_message(conn.upstream, request)
        reply = _read_message(conn.upstream)
        if reply is None:
            raise AgentProtocolError("ssh-agent closed the connection")
        return reply
