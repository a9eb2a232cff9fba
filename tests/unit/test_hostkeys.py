"""Tests for securebuild_tasks.hostkeys against real ssh-keygen known_hosts files."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from securebuild_tasks.errors import HostKeyError
from securebuild_tasks.hostkeys import default_known_hosts, explain_ssh_failure, select_known_hosts
from securebuild_tasks.requirements import SSHHost

GIT = SSHHost("git.example.com")
LOCAL = SSHHost("127.0.0.1")
LOCAL_2222 = SSHHost("127.0.0.1", 2222)
OTHER_2200 = SSHHost("git.example.com", 2200)
ABSENT = SSHHost("absent.example.org")
ABSENT_2222 = SSHHost("absent.example.org", 2222)


@pytest.fixture(scope="module")
def keygen() -> str:
    """The ssh-keygen binary; these tests need the real one."""
    path = shutil.which("ssh-keygen")
    if path is None:
        pytest.skip("ssh-keygen is not installed; these tests need a real OpenSSH client")
    return path


@dataclass(frozen=True)
class KnownHosts:
    """A plain known_hosts file, a hashed copy, and the expected line per host."""

    plain: Path
    hashed: Path
    lines: dict[SSHHost, str]  # host -> its line in the plain file
    hashed_lines: dict[SSHHost, str]  # host -> its line in the hashed file
    host_keys: dict[SSHHost, Path]  # host -> private host key file


def _host_key(keygen: str, directory: Path, name: str) -> Path:
    """A fresh ed25519 host key made by ssh-keygen."""
    path = directory / name
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _public(key: Path) -> str:
    """'TYPE BASE64' of a key's public half, without its comment."""
    kind, blob = key.with_suffix(".pub").read_text(encoding="utf-8").split()[:2]
    return f"{kind} {blob}"


@pytest.fixture(scope="module")
def known_hosts(keygen: str, tmp_path_factory: pytest.TempPathFactory) -> KnownHosts:
    """Known_hosts files with four hosts, each with its own ed25519 host key."""
    root = tmp_path_factory.mktemp("known_hosts")
    hosts = [GIT, LOCAL, LOCAL_2222, OTHER_2200]
    keys = {host: _host_key(keygen, root, f"host_key_{i}") for i, host in enumerate(hosts)}
    lines = {host: f"{host.known_hosts_name} {_public(keys[host])}" for host in hosts}
    plain = root / "known_hosts"
    plain.write_text(
        "# pinned by hand\n\n" + "\n".join(lines[h] for h in hosts) + "\n", encoding="utf-8"
    )
    hashed = root / "known_hosts_hashed"
    shutil.copyfile(plain, hashed)
    subprocess.run([keygen, "-H", "-f", str(hashed)], check=True, capture_output=True)
    hashed_text = hashed.read_text(encoding="utf-8")
    assert "git.example.com" not in hashed_text
    assert "127.0.0.1" not in hashed_text
    # ssh-keygen -H keeps the order and each key, so the key identifies the hashed line.
    hashed_lines = {
        host: next(line for line in hashed_text.splitlines() if line.endswith(_public(key)))
        for host, key in keys.items()
    }
    assert all(line.startswith("|1|") for line in hashed_lines.values())
    return KnownHosts(plain, hashed, lines, hashed_lines, keys)


# --- select_known_hosts ---------------------------------------------------------------


@pytest.mark.parametrize("host", [GIT, LOCAL, LOCAL_2222, OTHER_2200], ids=str)
def test_selects_exactly_the_hosts_line(known_hosts: KnownHosts, host: SSHHost) -> None:
    """One requested host gives exactly its own line, in port and non-port forms."""
    assert select_known_hosts([host], known_hosts.plain) == known_hosts.lines[host] + "\n"


def test_port_and_default_port_are_different_hosts(known_hosts: KnownHosts) -> None:
    """host and [host]:port are separate entries, as they are for ssh."""
    default = select_known_hosts([LOCAL], known_hosts.plain)
    ported = select_known_hosts([LOCAL_2222], known_hosts.plain)
    assert default != ported
    assert "[127.0.0.1]:2222" not in default
    assert ported.startswith("[127.0.0.1]:2222 ")


def test_selects_several_hosts_in_order(known_hosts: KnownHosts) -> None:
    """Several hosts give their lines in the requested order and nothing else."""
    hosts = [LOCAL_2222, GIT]
    expected = "".join(known_hosts.lines[h] + "\n" for h in hosts)
    assert select_known_hosts(hosts, known_hosts.plain) == expected


def test_comments_are_not_selected(known_hosts: KnownHosts) -> None:
    """Comment lines of the file and ssh-keygen's '# Host found' lines are left out."""
    text = select_known_hosts([GIT, LOCAL], known_hosts.plain)
    assert not any(line.startswith("#") for line in text.splitlines())
    assert len(text.splitlines()) == 2


@pytest.mark.parametrize("host", [GIT, LOCAL, LOCAL_2222, OTHER_2200], ids=str)
def test_hashed_file(known_hosts: KnownHosts, host: SSHHost) -> None:
    """Entries hashed by `ssh-keygen -H` are found and returned as hashed lines."""
    text = select_known_hosts([host], known_hosts.hashed)
    assert text == known_hosts.hashed_lines[host] + "\n"


def test_no_hosts_needs_no_file(tmp_path: Path) -> None:
    """With no SSH hosts there is nothing to pin, even without a known_hosts file."""
    assert select_known_hosts([], tmp_path / "does-not-exist") == ""


@pytest.mark.parametrize("absent", [ABSENT, ABSENT_2222, SSHHost("git.example.com", 2222)])
def test_absent_host_fails_naming_it(known_hosts: KnownHosts, absent: SSHHost) -> None:
    """A host missing from known_hosts gives HostKeyError naming host and file."""
    with pytest.raises(HostKeyError) as info:
        select_known_hosts([GIT, absent], known_hosts.plain)
    err = info.value
    assert f"git host {absent} is not in {known_hosts.plain}" in err.message
    assert f"ssh-keyscan {'-p 2222 ' if absent.port == 2222 else ''}{absent.host} >>" in err.hint
    assert err.exit_code == 4


def test_absent_host_in_hashed_file(known_hosts: KnownHosts) -> None:
    """A hashed file also reports a missing host by name."""
    with pytest.raises(HostKeyError, match=re.escape("git host absent.example.org is not in")):
        select_known_hosts([ABSENT], known_hosts.hashed)


def test_missing_file_fails_naming_host(tmp_path: Path) -> None:
    """A missing known_hosts file gives HostKeyError naming the file and the host to add."""
    missing = tmp_path / "no_known_hosts"
    with pytest.raises(HostKeyError) as info:
        select_known_hosts([LOCAL_2222], missing)
    err = info.value
    assert f"known_hosts file {missing} does not exist" in err.message
    assert f"ssh-keyscan -p 2222 127.0.0.1 >> {missing}" in err.hint


def test_directory_is_not_a_known_hosts_file(tmp_path: Path) -> None:
    """A directory in place of known_hosts is reported like a missing file."""
    with pytest.raises(HostKeyError, match="does not exist"):
        select_known_hosts([GIT], tmp_path)


def test_empty_file_has_no_hosts(tmp_path: Path, keygen: str) -> None:
    """An empty known_hosts file pins nothing."""
    empty = tmp_path / "known_hosts"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(HostKeyError, match=re.escape("git host git.example.com is not in")):
        select_known_hosts([GIT], empty)


def test_hints_never_suggest_disabling_host_key_checking(
    known_hosts: KnownHosts, tmp_path: Path
) -> None:
    """No hint tells the user to turn off StrictHostKeyChecking or accept keys blindly."""
    errors = []
    for hosts, path in [([ABSENT], known_hosts.plain), ([ABSENT_2222], tmp_path / "none")]:
        with pytest.raises(HostKeyError) as info:
            select_known_hosts(hosts, path)
        errors.append(info.value)
    for err in errors:
        text = err.line().lower()
        assert "check the host's key fingerprint with its owner" in text
        for forbidden in ("stricthostkeychecking", "accept-new", "userknownhostsfile=/dev/null"):
            assert forbidden not in text


def test_default_known_hosts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The default file is ~/.ssh/known_hosts of the current user."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_known_hosts() == tmp_path / ".ssh" / "known_hosts"


# --- explain_ssh_failure on recorded OpenSSH output -----------------------------------

CHANGED_BANNER = """\
#12 3.456 @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
#12 3.456 @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
#12 3.456 @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
#12 3.456 IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
#12 3.456 Someone could be eavesdropping on you right now (man-in-the-middle attack)!
#12 3.456 It is also possible that a host key has just been changed.
#12 3.456 The fingerprint for the ED25519 key sent by the remote host is
#12 3.456 SHA256:MeJQ8S13KUcpmyMooWAK5Np/1jnyyGbsLL9MiGwAwjc.
#12 3.456 Please contact your system administrator.
#12 3.456 Add correct host key in /run/secrets/known_hosts to get rid of this message.
#12 3.456 Offending ED25519 key in /run/secrets/known_hosts:1
#12 3.456   remove with:
#12 3.456   ssh-keygen -f "/run/secrets/known_hosts" -R "[127.0.0.1]:2222"
#12 3.456 Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.
#12 3.456 Host key verification failed.
#12 3.457 fatal: Could not read from remote repository.
"""

UNKNOWN_KEY = """\
  Running command git clone --filter=blob:none --quiet 'ssh://****@127.0.0.1:2222/lib.git'
  No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.
  Host key verification failed.
  fatal: Could not read from remote repository.
"""

REFUSED = """\
  Running command git clone --filter=blob:none --quiet 'ssh://****@127.0.0.1:2222/lib.git'
  ssh: connect to host 127.0.0.1 port 2222: Connection refused
  fatal: Could not read from remote repository.
"""

TIMED_OUT = "ssh: connect to host git.example.com port 22: Connection timed out\r\n"

UNRESOLVED = """\
  ssh: Could not resolve hostname git.internal.example: Name or service not known
  fatal: Could not read from remote repository.
"""

DENIED = """\
  git@127.0.0.1: Permission denied (publickey).
  fatal: Could not read from remote repository.

  Please make sure you have the correct access rights
  and the repository exists.
"""


def _explain(output: str, hosts: Sequence[SSHHost] = (LOCAL_2222,)) -> tuple[str, str]:
    explained = explain_ssh_failure(output, hosts)
    assert explained is not None, output
    return explained


def test_changed_host_key() -> None:
    """The changed-host-key banner is reported as a possible impostor, naming the host."""
    message, hint = _explain(CHANGED_BANNER)
    assert message == "the host key of [127.0.0.1]:2222 has changed since it was pinned"
    assert "someone may be posing as the git host" in hint
    assert "verify the new key with its owner" in hint


def test_unknown_host_key_names_host_from_output() -> None:
    """'No ... host key is known for' names the host ssh printed."""
    message, hint = _explain(UNKNOWN_KEY, [GIT])
    assert message == "git host [127.0.0.1]:2222 offered a key type that has no pinned entry"
    assert "add that key to known_hosts" in hint


def test_bare_verification_failure_names_requested_hosts() -> None:
    """A bare 'Host key verification failed.' names the requirements' hosts."""
    message, hint = _explain("Host key verification failed.\n", [GIT, LOCAL_2222])
    assert message == (
        "the key of git host git.example.com, 127.0.0.1:2222 does not match the pinned"
        " known_hosts entry"
    )
    assert "verify the host's fingerprint with its owner" in hint


def test_bare_verification_failure_without_hosts() -> None:
    """With no known hosts, the message falls back to 'the git host'."""
    message, _ = _explain("Host key verification failed.", [])
    assert message == "the key of the git host does not match the pinned known_hosts entry"


def test_connection_refused() -> None:
    """Connection refused names host, port and ssh's reason."""
    message, hint = _explain(REFUSED)
    assert message == (
        "git host 127.0.0.1 port 2222 is unreachable from the build (Connection refused)"
    )
    assert "securebuild.network" in hint


def test_connection_timed_out_with_crlf() -> None:
    """The reason stops at the end of its line, carriage return included."""
    message, _ = _explain(TIMED_OUT, [GIT])
    assert message == (
        "git host git.example.com port 22 is unreachable from the build (Connection timed out)"
    )


def test_unresolved_host() -> None:
    """Could not resolve hostname names the host without its trailing colon."""
    message, hint = _explain(UNRESOLVED)
    assert message == "git host git.internal.example cannot be resolved from the build"
    assert "DNS" in hint


def test_permission_denied() -> None:
    """Permission denied (publickey) says the hosts refused the forwarded key."""
    message, hint = _explain(DENIED, [LOCAL_2222])
    assert message == "git host 127.0.0.1:2222 refused the forwarded key"
    assert "deploy keys" in hint


def test_permission_denied_with_several_methods() -> None:
    """Permission denied listing more methods than publickey is recognised too."""
    message, _ = _explain("git@h: Permission denied (publickey,password).", [GIT])
    assert message == "git host git.example.com refused the forwarded key"


@pytest.mark.parametrize(
    "output",
    [CHANGED_BANNER, UNKNOWN_KEY, REFUSED, TIMED_OUT, UNRESOLVED, DENIED],
)
def test_explanations_never_suggest_disabling_checks(output: str) -> None:
    """No explanation tells the user to turn off host key checking."""
    message, hint = _explain(output)
    text = f"{message} {hint}".lower()
    assert "stricthostkeychecking" not in text
    assert "accept-new" not in text


@pytest.mark.parametrize(
    "output",
    [
        "",
        "ERROR: Could not find a version that satisfies the requirement nope\n",
        "fatal: repository 'https://example.com/x.git/' not found\n",
        "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\n",
        "error: RPC failed; curl 56 GnuTLS recv error (-54)\n",
        '#8 ERROR: process "/bin/sh -c pip install -r requirements.txt" did not complete',
    ],
)
def test_unrelated_output_is_none(output: str) -> None:
    """Output without any of ssh's complaints gives None."""
    assert explain_ssh_failure(output, [GIT]) is None


# --- explain_ssh_failure on what a real ssh prints -------------------------------------


def _real_ssh(
    tmp_path: Path, known_hosts: Path, host_key: Path | None, *args: str, port: int = 2222
) -> str:
    """Run a real ssh and return its stderr; the server is `sshd -i` on a pipe, no port."""
    ssh, sshd = shutil.which("ssh"), shutil.which("sshd") or "/usr/sbin/sshd"
    if ssh is None:
        pytest.skip("ssh is not installed")
    options = [
        "-F",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        f"IdentityFile={tmp_path / 'no-such-identity'}",
        "-p",
        str(port),
    ]
    if host_key is not None:
        if not os.access(sshd, os.X_OK):
            pytest.skip("sshd is not installed; this test needs a real OpenSSH server")
        config = tmp_path / "sshd_config"
        config.write_text(
            f"HostKey {host_key}\nPidFile none\nUsePAM no\nStrictModes no\n"
            "AuthorizedKeysFile none\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n",
            encoding="utf-8",
        )
        proxy = f"{shlex.quote(sshd)} -i -f {shlex.quote(str(config))}"
        options += ["-o", f"ProxyCommand={proxy}"]
    done = subprocess.run(
        [ssh, *options, *args, "git@127.0.0.1", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 255, done.stderr
    return done.stderr


def test_real_ssh_changed_host_key(known_hosts: KnownHosts, tmp_path: Path) -> None:
    """ssh's own banner for a server whose key is not the pinned one is recognised."""
    # The server presents GIT's key while known_hosts pins LOCAL_2222's.
    output = _real_ssh(tmp_path, known_hosts.plain, known_hosts.host_keys[GIT])
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in output
    message, _ = _explain(output)
    assert message == "the host key of [127.0.0.1]:2222 has changed since it was pinned"


def test_real_ssh_host_not_pinned(known_hosts: KnownHosts, tmp_path: Path) -> None:
    """ssh's output for a host absent from known_hosts is recognised, naming the host."""
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("", encoding="utf-8")
    output = _real_ssh(tmp_path, empty, known_hosts.host_keys[LOCAL_2222])
    assert "Host key verification failed." in output
    message, _ = _explain(output)
    assert "git host [127.0.0.1]:2222 " in message


def test_real_ssh_selected_lines_are_trusted(known_hosts: KnownHosts, tmp_path: Path) -> None:
    """The selected lines let a real ssh verify the host; it then fails only on the key."""
    selected = tmp_path / "selected"
    selected.write_text(select_known_hosts([LOCAL_2222], known_hosts.hashed), encoding="utf-8")
    output = _real_ssh(tmp_path, selected, known_hosts.host_keys[LOCAL_2222])
    assert "Host key verification failed" not in output
    assert "Permission denied (publickey" in output
    assert _explain(output)[0] == "git host 127.0.0.1:2222 refused the forwarded key"


def test_real_ssh_connection_refused(tmp_path: Path) -> None:
    """ssh's connection-refused line for a closed local port is recognised."""
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and is now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    output = _real_ssh(tmp_path, tmp_path / "kh", None, port=port)
    message, _ = _explain(output, [SSHHost("127.0.0.1", port)])
    assert message == (
        f"git host 127.0.0.1 port {port} is unreachable from the build (Connection refused)"
    )


def test_real_ssh_unresolvable(tmp_path: Path) -> None:
    """ssh's could-not-resolve line is recognised (made without any DNS query)."""
    # An IPv4 literal asked for as IPv6 fails inside getaddrinfo, with no network use.
    output = _real_ssh(tmp_path, tmp_path / "kh", None, "-6")
    assert "Could not resolve hostname" in output
    message, _ = _explain(output)
    assert message == "git host 127.0.0.1 cannot be resolved from the build"
