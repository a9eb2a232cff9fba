"""Pinned host keys: the known_hosts lines for the git hosts a build needs.

Host keys are never scanned at build time (trust on first use lets anyone on the
path pose as the git host). The build gets only the user's own, already trusted
entries for the hosts its requirements name, and ssh inside the build runs with
``StrictHostKeyChecking=yes`` against exactly those.

Lookup uses ``ssh-keygen -F``, so hashed entries (``HashKnownHosts yes``),
``[host]:port`` names and markers work exactly as they do for ssh itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import HostKeyError, SecurebuildError
from .requirements import SSHHost


def default_known_hosts() -> Path:
    """The user's own known_hosts file."""
    return Path.home() / ".ssh" / "known_hosts"


def select_known_hosts(hosts: Sequence[SSHHost], known_hosts: Path) -> str:
    """Return the known_hosts lines for ``hosts``; fail naming any host not pinned."""
    if not hosts:
        return ""
    if not known_hosts.is_file():
        raise HostKeyError(
            f"known_hosts file {known_hosts} does not exist, so no git host is trusted",
            hint=_trust_hint(hosts[0], known_hosts),
        )
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise SecurebuildError("ssh-keygen is not installed", hint="install the OpenSSH client")
    lines: list[str] = []
    for host in hosts:
        found = subprocess.run(
            [keygen, "-F", host.known_hosts_name, "-f", str(known_hosts)],
            capture_output=True,
            text=True,
            check=False,
        )
        entries = [
            line for line in found.stdout.splitlines() if line.strip() and not line.startswith("#")
        ]
        if found.returncode != 0 or not entries:
            raise HostKeyError(
                f"git host {host} is not in {known_hosts}",
                hint=_trust_hint(host, known_hosts),
            )
        lines.extend(entries)
    return "\n".join(lines) + "\n"


def _trust_hint(host: SSHHost, known_hosts: Path) -> str:
    port = f"-p {host.port} " if host.port != 22 else ""
    return (
        f"check the host's key fingerprint with its owner, then run "
        f"`ssh-keyscan {port}{host.host} >> {known_hosts}` "
        f"(or `ssh {port}{host.host}` once and accept it), or point securebuild.known_hosts"
        f" at a file that has it"
    )


_CHANGED = re.compile(r"Host key for (\S+) has changed")
_UNKNOWN = re.compile(r"No \S+ host key is known for (\S+)")
_UNREACHABLE = re.compile(r"ssh: connect to host (\S+) port (\d+): ([^\r\n]+)")
_RESOLVE = re.compile(r"ssh: Could not resolve hostname (\S+?):")


def explain_ssh_failure(output: str, hosts: Sequence[SSHHost]) -> tuple[str, str] | None:
    """Turn ssh's complaints in build output into (message, hint), or None."""
    names = ("git host " + ", ".join(str(h) for h in hosts)) if hosts else "the git host"
    if match := _CHANGED.search(output):
        return (
            f"the host key of {match.group(1)} has changed since it was pinned",
            "someone may be posing as the git host; verify the new key with its owner before "
            "replacing the old entry in known_hosts",
        )
    if match := _UNKNOWN.search(output):
        return (
            f"git host {match.group(1)} offered a key type that has no pinned entry",
            "verify the host's fingerprint with its owner and add that key to known_hosts",
        )
    if "Host key verification failed" in output:
        return (
            f"the key of {names} does not match the pinned known_hosts entry",
            "verify the host's fingerprint with its owner and fix known_hosts",
        )
    if match := _UNREACHABLE.search(output):
        return (
            f"git host {match.group(1)} port {match.group(2)} is unreachable from the build"
            f" ({match.group(3).strip()})",
            "check that the host is up and reachable; set securebuild.network if the build "
            "needs another network (e.g. host)",
        )
    if match := _RESOLVE.search(output):
        return (
            f"git host {match.group(1)} cannot be resolved from the build",
            "check the host name, DNS, and securebuild.network",
        )
    if "Permission denied (publickey" in output:
        return (
            f"{names} refused the forwarded key",
            "add the key's public half to the repository's deploy keys or the user's SSH keys"
            " (a host that trusts an SSH CA wants the key's certificate: KEY-cert.pub beside a"
            " key file, or loaded into the agent with the key)",
        )
    return None
