"""Property 10: the Dockerfiles the tool ships forward the key only where code is
fetched, always with ``required=true``, and declare nothing secret-looking.

Checked on the built-in template and on the Dockerfile ``securebuild init``
writes, with the package's own classifier and with an independent rule list;
each check is first shown to catch the old insecure recipe. BuildKit's own build
checks (``docker build --check``) run on the second engine, Docker 28 with
buildx 0.29, and must pass both files and fail the old recipe.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from securebuild_tasks.audit import SECRET_NAME
from securebuild_tasks.build import template_path
from securebuild_tasks.doctor import _SECRET_DECLARATION
from tests.support.cli import run_cli, user_env
from tests.support.dockerfile import Instruction, declared_names, instructions, run_mounts
from tests.support.fixtures import BASE_IMAGE, ModernEngine

SSH_MOUNT = "type=ssh,required=true"

#: An independent list of name parts that mark a variable as secret. Kept apart
#: from the package's classifier on purpose: a shared rule shares blind spots.
SECRET_PARTS = (
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "PWD",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "NETRC",
    "CERT",
)

#: The old recipe this project replaces, with every mistake the checks must catch.
INSECURE = """\
FROM python:3.12-slim AS build
ARG SSH_PRIVATE_KEY
ARG BASE_IMAGE SSH_KEY_PASSPHRASE=
ENV PIP_NO_INPUT=1 GITHUB_TOKEN="ghp_x y"
ENV NETRC_FILE /root/.netrc
RUN mkdir -p /root/.ssh && echo "$SSH_PRIVATE_KEY" > /root/.ssh/id_rsa
RUN pip wheel --wheel-dir /wheels -r requirements.txt
RUN --mount=type=ssh git clone ssh://git@example.com/acme/core.git /src
"""


def fetch_steps(steps: list[Instruction]) -> list[Instruction]:
    """RUN steps that fetch code over the network with pip, uv, git or ssh.

    Installing from local wheels (``--no-index``) fetches nothing; ``pip
    install uv`` (no requirements file) fetches a public tool, not private code;
    nor does a step that resolves only ``index.txt``, which it wrote itself by
    dropping every line with a URL (the template's second install step: index
    packages only; that the filter keeps no URL line is tested in
    tests/unit/test_requirements.py).
    """
    found = []
    for step in steps:
        if step.keyword != "RUN":
            continue
        command = re.sub(r"--mount=\S+", "", step.args)
        resolves = re.search(r"\b(pip|uv)\b.*(\s-r\s|\bcompile\b)", command) is not None
        url_free = "!~ /:\\/\\//" in command and "> index.txt" in command
        if url_free and set(re.findall(r"\s-r\s+([^\s;]+)", command)) == {"index.txt"}:
            resolves = False
        offline = "--no-index" in command
        git_or_ssh = re.search(r"\bgit (clone|fetch|ls-remote)\b|ssh://|\bssh\s+\S*@", command)
        if (resolves and not offline) or git_or_ssh is not None:
            found.append(step)
    return found


def ssh_problems(text: str) -> list[str]:
    """Fetch steps without a required SSH mount, and SSH mounts outside fetch steps."""
    steps = instructions(text)
    fetching = fetch_steps(steps)
    problems = [
        f"line {step.line}: fetches without --mount={SSH_MOUNT}"
        for step in fetching
        if not any(m.startswith(SSH_MOUNT) or m == SSH_MOUNT for m in run_mounts(step))
    ]
    problems += [
        f"line {step.line}: forwards the key to a step that fetches nothing"
        for step in steps
        if step not in fetching and any(m.startswith("type=ssh") for m in run_mounts(step))
    ]
    return problems


def independent_secret_names(text: str) -> list[str]:
    """ARG/ENV names matching the test's own rule list."""
    return [
        name
        for step in instructions(text)
        for name in declared_names(step)
        if any(part in name.upper() for part in SECRET_PARTS)
    ]


def package_secret_names(text: str) -> list[str]:
    """ARG/ENV names the package's classifier (audit's SECRET_NAME, doctor's rule) flags."""
    per_name = [
        name
        for step in instructions(text)
        for name in declared_names(step)
        if re.fullmatch(SECRET_NAME, name, re.IGNORECASE)
    ]
    whole = [m.group(0).strip() for m in _SECRET_DECLARATION.finditer(text)]
    return per_name + whole


def test_checks_catch_the_old_recipe() -> None:
    """Every check below flags the insecure recipe, so a clean result means something."""
    assert len(ssh_problems(INSECURE)) == 2  # pip wheel unforwarded; git clone not required
    assert set(independent_secret_names(INSECURE)) == {
        "SSH_PRIVATE_KEY",
        "SSH_KEY_PASSPHRASE",
        "GITHUB_TOKEN",
        "NETRC_FILE",
    }
    assert {"SSH_PRIVATE_KEY", "SSH_KEY_PASSPHRASE", "GITHUB_TOKEN", "NETRC_FILE"} <= set(
        package_secret_names(INSECURE)
    )
    # A key forwarded to a step that needs none is flagged too.
    assert ssh_problems("FROM x\nRUN --mount=type=ssh,required=true echo hi\n") != []


@pytest.fixture(scope="module")
def init_dockerfile(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Dockerfile `securebuild init` writes, through the real CLI."""
    path = tmp_path_factory.mktemp("init")
    done = run_cli("securebuild_tasks", path, "init", "--entry", "svc", env=user_env())
    assert done.returncode == 0, done.stderr
    return (path / "Dockerfile").read_text(encoding="utf-8")


@pytest.fixture(params=["template", "init"])
def dockerfile(request: pytest.FixtureRequest) -> str:
    """The built-in template, then the Dockerfile init renders."""
    if request.param == "template":
        return template_path().read_text(encoding="utf-8")
    return str(request.getfixturevalue("init_dockerfile"))


def test_every_private_fetch_requires_the_forwarded_key(dockerfile: str) -> None:
    """Every fetch step mounts the agent with required=true (no silent keyless fetch),
    every such step is one `inv clean` can find, and no other step sees the agent."""
    steps = instructions(dockerfile)
    fetching = fetch_steps(steps)
    assert len(fetching) >= 2, "the lock and wheels stages should both fetch"
    assert ssh_problems(dockerfile) == []
    for step in fetching:
        mounts = run_mounts(step)
        assert "type=secret,id=known_hosts,required=true" in mounts, step.line
        assert ": securebuild-private-step" in step.args, step.line
    marked = [s for s in steps if s.keyword == "RUN" and "securebuild-private-step" in s.args]
    assert marked == fetching


def test_no_secret_looking_arg_or_env(dockerfile: str) -> None:
    """No ARG or ENV is named like a secret, by the package's rule or the test's own."""
    names = [n for s in instructions(dockerfile) for n in declared_names(s)]
    assert {"BASE_IMAGE", "REQUIREMENTS", "GIT_SSH_COMMAND"} <= set(names)  # the parser works
    assert independent_secret_names(dockerfile) == []
    assert package_secret_names(dockerfile) == []


def test_ssh_inside_the_build_checks_host_keys_strictly(dockerfile: str) -> None:
    """The ssh command git uses pins known_hosts from the secret and never asks or scans."""
    envs = [s.args for s in instructions(dockerfile) if s.keyword == "ENV"]
    command = next(e for e in envs if e.startswith("GIT_SSH_COMMAND="))
    assert "StrictHostKeyChecking=yes" in command
    assert "UserKnownHostsFile=/run/secrets/known_hosts" in command
    assert "BatchMode=yes" in command
    assert all("ssh-keyscan" not in s.args for s in instructions(dockerfile))


def _build_check(engine: ModernEngine, dockerfile: str, context: Path) -> str:
    """``docker build --check`` of ``dockerfile`` on the modern engine: its output,
    and whether it passed, as "PASS" / "FAIL" on the first line."""
    (context / "Dockerfile.checked").write_text(dockerfile, encoding="utf-8")
    (context / "requirements.txt").write_text("six\n")
    done = engine.run(
        "buildx", "build", "--check", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--file", str(context / "Dockerfile.checked"), str(context),
        check=False,
    )  # fmt: skip
    return ("PASS" if done.returncode == 0 else "FAIL") + "\n" + done.stdout + done.stderr


def test_engine_build_checks_catch_the_old_recipe(
    modern_engine: ModernEngine, tmp_path: Path
) -> None:
    """`docker build --check` (BuildKit's own rules) fails the insecure recipe."""
    local_base = INSECURE.replace("FROM python:3.12-slim", f"FROM {BASE_IMAGE}")  # no pulls here
    checked = _build_check(modern_engine, local_base, tmp_path)
    assert checked.startswith("FAIL"), checked
    assert "SecretsUsedInArgOrEnv" in checked, checked
    assert "SSH_PRIVATE_KEY" in checked, checked


def test_engine_build_checks_pass(
    dockerfile: str, modern_engine: ModernEngine, tmp_path: Path
) -> None:
    """`docker build --check` finds nothing in the template or init's Dockerfile
    (Docker 28, buildx 0.29: the 20.10 engine has no build checks)."""
    checked = _build_check(modern_engine, dockerfile, tmp_path)
    assert checked.startswith("PASS"), checked
    assert "Check complete, no warnings found." in checked, checked
