"""Property 5: host keys are pinned, checked strictly, and never scanned.

A second real sshd with its own host key takes over the port that known_hosts
pins (the attacker on the path); a hashed known_hosts pinning a key of another
type for the host; and a source scan proving no code path runs ``ssh-keyscan``
or relaxes ``StrictHostKeyChecking``. (A known_hosts entry with the wrong key of
the same type is tests/integration/test_host_keys.py.)
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from securebuild_tasks.build import template_path
from tests.integration.test_build_image import _assert_one_line_error as assert_one_line_error
from tests.support.cli import user_env
from tests.support.dockerfile import instructions
from tests.support.fixtures import Lab, Project, securebuild_leftovers
from tests.support.leaks import find_in_bytes, key_needles
from tests.support.realparts import GitServer, SSHKey, make_key, run

PACKAGE = Path(__file__).resolve().parents[2] / "securebuild_tasks"

# ---------------------------------------------------------------------------
# The source scan: no code path scans host keys or relaxes checking.

#: ssh options that accept whatever key a host offers.
RELAXED = re.compile(
    r"StrictHostKeyChecking\s*[= ]\s*[\"']?(no|off|false|0|accept-new|ask)\b", re.IGNORECASE
)
#: Calls that start a process (their string arguments are command lines).
LAUNCHERS = {
    "run",
    "Popen",
    "call",
    "check_call",
    "check_output",
    "system",
    "popen",
    "spawnv",
    "spawnvp",
    "execv",
    "execvp",
    "execvpe",
    "which",
    "_tool",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "getstatusoutput",
}


def _strings(node: ast.AST) -> list[str]:
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def python_findings(source: str, name: str) -> list[str]:
    """Places in Python source that run ssh-keyscan or relax host key checking.

    Messages may *mention* ssh-keyscan (the hint telling users how to pin a host
    by hand, doctor's check for it in a Dockerfile); what is flagged is the
    command word itself as a string of its own (argv element, `which` lookup,
    shell line starting with it) anywhere but a membership test, and any string
    handed to a process launcher that contains it.
    """
    tree = ast.parse(source)
    found: list[str] = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if RELAXED.search(text):
                found.append(f"{name}:{node.lineno}: relaxes StrictHostKeyChecking")
            command_word = re.match(r"^\s*(\S*/)?ssh-keyscan(\s|$)", text) is not None
            if command_word and not isinstance(parents.get(node), ast.Compare):
                found.append(f"{name}:{node.lineno}: names the ssh-keyscan command")
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in LAUNCHERS and any(
                "keyscan" in s for arg in [*node.args, *node.keywords] for s in _strings(arg)
            ):
                found.append(f"{name}:{node.lineno}: starts ssh-keyscan")
    return found


def dockerfile_findings(text: str, name: str) -> list[str]:
    """Instructions (comments excluded) that scan host keys or relax checking."""
    found = []
    for step in instructions(text):
        if "keyscan" in step.args:
            found.append(f"{name}:{step.line}: {step.keyword} runs ssh-keyscan")
        if RELAXED.search(step.args):
            found.append(f"{name}:{step.line}: {step.keyword} relaxes StrictHostKeyChecking")
    return found


BAD_PYTHON = """\
import os, shutil, subprocess
KEYSCAN = "ssh-keyscan"
def pin(host):
    out = subprocess.run([shutil.which("ssh-keyscan"), "-H", host], capture_output=True)
    os.system(f"ssh-keyscan -p 22 {host} >> ~/.ssh/known_hosts")
    return ["ssh", "-o", "StrictHostKeyChecking=accept-new", host]
GIT = "ssh -oStrictHostKeyChecking=no"
"""
BAD_DOCKERFILE = """\
FROM python:3.12-slim
# comments may say ssh-keyscan; only instructions count
RUN mkdir -p /root/.ssh && \\
    ssh-keyscan github.com >> /root/.ssh/known_hosts
ENV GIT_SSH_COMMAND="ssh -o StrictHostKeyChecking=no"
"""


def test_scan_finds_keyscan_and_relaxed_checking_when_present() -> None:
    """The scan is able to fail: it flags each way of scanning or relaxing, and
    not a hint that merely tells the user about ssh-keyscan."""
    found = python_findings(BAD_PYTHON, "bad.py")
    assert sorted(found) == [
        "bad.py:2: names the ssh-keyscan command",
        "bad.py:4: names the ssh-keyscan command",
        "bad.py:4: starts ssh-keyscan",  # subprocess.run
        "bad.py:4: starts ssh-keyscan",  # shutil.which
        "bad.py:5: names the ssh-keyscan command",
        "bad.py:5: starts ssh-keyscan",
        "bad.py:6: relaxes StrictHostKeyChecking",
        "bad.py:7: relaxes StrictHostKeyChecking",
    ]
    assert dockerfile_findings(BAD_DOCKERFILE, "Dockerfile") == [
        "Dockerfile:3: RUN runs ssh-keyscan",
        "Dockerfile:5: ENV relaxes StrictHostKeyChecking",
    ]
    hint = 'raise Error("run `ssh-keyscan -p 22 host >> kh` after checking")\n'
    check = 'if "ssh-keyscan" in text:\n    pass\n'
    assert python_findings(hint + check, "ok.py") == []


def test_no_code_path_scans_host_keys_or_relaxes_checking() -> None:
    """The package's Python, the template and init's Dockerfile never run ssh-keyscan
    nor set StrictHostKeyChecking to no / accept-new."""
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    found = [f for p in sources for f in python_findings(p.read_text("utf-8"), p.name)]
    from securebuild_tasks.scaffold import render_dockerfile

    found += dockerfile_findings(template_path().read_text("utf-8"), "Dockerfile.template")
    found += dockerfile_findings(render_dockerfile("python:3.12-slim", "app"), "init Dockerfile")
    assert found == []


# ---------------------------------------------------------------------------
# Real sshd: an impostor on the pinned port, a pin of the wrong key type.


def _ls_remote(url: str, key: SSHKey, known_hosts: Path) -> subprocess.CompletedProcess[str]:
    """`git ls-remote` from the host with strict checking against ``known_hosts``."""
    ssh = (
        f"ssh -i {key.private} -o IdentitiesOnly=yes -o BatchMode=yes"
        f" -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts}"
        " -o GlobalKnownHostsFile=/dev/null"
    )
    env = user_env(GIT_SSH_COMMAND=ssh)
    return subprocess.run(
        ["git", "ls-remote", url], env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.engine
def test_impostor_sshd_on_the_pinned_port_fails_closed(project: Project, tmp_path: Path) -> None:
    """Another sshd (own host key, same repos, the key authorized) answers on the
    pinned [127.0.0.1]:PORT: the build stops with exit 4 naming the host, the key
    never authenticates to the impostor, and nothing is left behind."""
    key = make_key(tmp_path / "keys", "p5-deploy")
    real = GitServer(tmp_path / "real").start()
    try:
        real.authorize(key)
        url = real.create_package("hostpkg", "v1.0.0", "1.0.0")
        pinned = tmp_path / "known_hosts.pinned"
        pinned.write_text(real.known_hosts_line())
        assert _ls_remote(url, key, pinned).returncode == 0  # the real host, as pinned
    finally:
        real.stop()
    (tmp_path / "impostor").mkdir()
    impostor = GitServer(tmp_path / "impostor")
    impostor.port, impostor.repos = real.port, real.repos  # same address, same repositories
    impostor.start()
    try:
        impostor.authorize(key)
        (project.path / "known_hosts").write_text(pinned.read_text())
        project.requirements(f"hostpkg @ git+{url}@v1.0.0\n")
        done = project.inv(
            "build-image",
            env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(key.private)},
        )
        assert_one_line_error(done, 4, f"[127.0.0.1]:{real.port}", "has changed")
        assert securebuild_leftovers() == []
        assert (
            find_in_bytes((done.stdout + done.stderr).encode(), key_needles(key.private_bytes))
            == []
        )
        # ssh checks the host before it authenticates: the impostor never saw the key used.
        assert key.fingerprint not in impostor.log.read_text()
        # The check can fail: trusting the impostor's key, the same fetch works.
        own = tmp_path / "known_hosts.impostor"
        own.write_text(impostor.known_hosts_line())
        assert _ls_remote(url, key, own).returncode == 0
        assert key.fingerprint in impostor.log.read_text()
    finally:
        impostor.stop()


@pytest.mark.engine
def test_hashed_pin_of_another_key_type_fails_closed(
    project: Project, lab: Lab, tmp_path: Path
) -> None:
    """A hashed known_hosts that pins an RSA key for the host, whose sshd offers
    only ed25519: no key matches, the build stops with exit 4 naming the host."""
    host_key = make_key(tmp_path / "hostkeys", "rsa-host", kind="rsa")
    kind, body = host_key.public_line.split()[:2]
    known_hosts = project.path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{lab.server.port} {kind} {body}\n")
    run("ssh-keygen", "-q", "-H", "-f", str(known_hosts))
    os.unlink(str(known_hosts) + ".old")
    assert "127.0.0.1" not in known_hosts.read_text()  # hashed
    done = project.inv(
        "build-image",
        env={"SECUREBUILD_KEY_SOURCE": "file", "SECUREBUILD_KEY_FILE": str(lab.deploy.private)},
    )
    # ssh knows a key of another type for the host, so it reports a changed key.
    assert_one_line_error(done, 4, f"[127.0.0.1]:{lab.server.port}", "has changed")
    assert securebuild_leftovers() == []
