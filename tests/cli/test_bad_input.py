"""Bad input to `inv build-image` and friends: one clear line, a non-zero exit,
no traceback, nothing left behind. These fail before any build starts, so they
need no Docker engine and no git server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.cli import run_cli, run_in_pty, user_env
from tests.support.realparts import Agent, make_key

USER_TASKS = (
    "import securebuild_tasks\nfrom invoke import Collection\n"
    "ns = Collection()\nsecurebuild_tasks.add_to(ns)\n"
)


@dataclass
class UserProject:
    """A project whose settings are all valid until a test breaks one."""

    path: Path
    env: dict[str, str]

    def inv(
        self, *args: str, input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run inv in the project with extra environment variables."""
        return run_cli(
            "invoke", self.path, *args, env={**self.env, **env}, input=input, timeout=120
        )


@pytest.fixture
def user_project(tmp_path: Path) -> Iterator[UserProject]:
    """A project with a pinned (made-up) git host and a key file."""
    path = tmp_path / "project"
    path.mkdir()
    (path / "tasks.py").write_text(USER_TASKS)
    (path / "requirements.txt").write_text(
        "privpkg @ git+ssh://git@127.0.0.1:2222/srv/privpkg.git@v1.0.0\nrequests==2.32.3\n"
    )
    host_key = make_key(tmp_path / "host", "host-key")
    kind, body = host_key.public_line.split()[:2]
    (path / "known_hosts").write_text(f"[127.0.0.1]:2222 {kind} {body}\n")
    key = make_key(tmp_path / "keys", "deploy-key")
    env = user_env(
        SECUREBUILD_KNOWN_HOSTS=str(path / "known_hosts"),
        SECUREBUILD_KEY_SOURCE="file",
        SECUREBUILD_KEY_FILE=str(key.private),
    )
    before = set(Path(tempfile.gettempdir()).glob("securebuild-*"))
    yield UserProject(path, env)
    after = set(Path(tempfile.gettempdir()).glob("securebuild-*"))
    assert after - before == set(), "an ephemeral work directory was left behind"


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *phrases: str) -> str:
    """Check the failure shape every bad input must have; return the line."""
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("securebuild: error: ")
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def test_invalid_setting_value(user_project: UserProject) -> None:
    """An unknown key source names the setting, where it came from and the choices."""
    done = user_project.inv("build-image", SECUREBUILD_KEY_SOURCE="usb-stick")
    one_line_error(done, 2, "key_source", "SECUREBUILD_KEY_SOURCE", "agent, keyring, file")


def test_invalid_flag_value(user_project: UserProject) -> None:
    """A bad --tag flag is reported as the flag."""
    done = user_project.inv("build-image", "--tag", "no spaces allowed")
    one_line_error(done, 2, "flag --tag")


def test_invalid_invoke_config_value(user_project: UserProject) -> None:
    """A bad value in invoke.yaml names the config key."""
    (user_project.path / "invoke.yaml").write_text("securebuild:\n  key_lifetime: soon\n")
    done = user_project.inv("build-image")
    one_line_error(done, 2, "securebuild.key_lifetime", "whole number")


def test_malformed_dotenv(user_project: UserProject) -> None:
    """A .env line that cannot be parsed stops the build with its line number."""
    (user_project.path / ".env").write_text("SECUREBUILD_TAG=v1\nthis is not an assignment\n")
    done = user_project.inv("build-image")
    one_line_error(done, 2, ".env line 2")


def test_secret_looking_build_arg(user_project: UserProject) -> None:
    """The old recipe's SSH_PRIVATE_KEY build arg is refused outright."""
    done = user_project.inv("build-image", SECUREBUILD_BUILD_ARGS="SSH_PRIVATE_KEY=x")
    one_line_error(done, 2, "SSH_PRIVATE_KEY", "secret")


def test_unreadable_pip_config(user_project: UserProject, tmp_path: Path) -> None:
    """A pip config pip could not read is refused before the build, its text not quoted."""
    token = "pypi-AgEIcHlwaS5vcmcSECRETtokenVALUE"
    conf = tmp_path / "pip.conf"
    conf.write_text(f"index-url = https://__token__:{token}@pypi.example.com/simple\n")
    done = user_project.inv("build-image", SECUREBUILD_PIP_CONFIG=str(conf))
    one_line_error(done, 2, f"pip_config {conf} cannot be read as a pip config (line 1)")
    assert token not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "option",
    [
        "--index-url https://other.example.com/simple",
        "-i https://o/s",
        "--index-url=https://o/s",
        "--extra-index-url https://a/s\n--index-url https://o/s",  # any option line
    ],
)
def test_index_named_twice(user_project: UserProject, option: str) -> None:
    """index_url and an index in the requirements file: pip and uv pick differently, refused."""
    reqs = user_project.path / "requirements.txt"
    reqs.write_text(f"{option}\n{reqs.read_text()}")
    done = user_project.inv(
        "build-image",
        SECUREBUILD_INDEX_URL="https://pypi.example.com/simple/",
        SECUREBUILD_INDEX_TOKEN="tok-0123456789abcdef",
    )
    line = one_line_error(done, 2, "index_url is set and requirements.txt names an index too")
    assert "tok-0123456789abcdef" not in line


@pytest.mark.parametrize(
    ("setting", "name", "text"),
    [
        ("SECUREBUILD_PIP_CONFIG", "pip.conf", "[global]\nindex_url = https://a.example/simple\n"),
        ("SECUREBUILD_UV_CONFIG", "uv.toml", 'index-url = "https://a.example/simple"\n'),
        ("SECUREBUILD_UV_CONFIG", "uv.toml", '[pip]\nindex-url = "https://a.example/simple"\n'),
        (
            "SECUREBUILD_UV_CONFIG",
            "uv.toml",
            '[[index]]\nname = "a"\nurl = "https://a.example/simple"\ndefault = true\n',
        ),
    ],
)
@pytest.mark.parametrize("task", ["build-image", "lock", "vendor"])
def test_index_named_by_the_file_and_a_config(
    user_project: UserProject, setting: str, name: str, text: str, task: str
) -> None:
    """An index in the requirements file and in a pip or uv config: pip takes the
    file's, uv the config's, so the two would install from different indexes."""
    config = user_project.path.parent / name
    config.write_text(text)
    for file in ("requirements.txt", "requirements.in"):
        (user_project.path / file).write_text("--index-url https://b.example/simple\nsix\n")
    done = user_project.inv(task, **{setting: str(config)})
    kind = setting.removeprefix("SECUREBUILD_").lower()
    one_line_error(done, 2, f"names an index (--index-url) and {kind} does too")
    # Without the file's index, the same config passes the check.
    (user_project.path / "requirements.txt").write_text("six\n")
    (user_project.path / "requirements.in").write_text("six\n")
    again = user_project.inv(task, **{setting: str(config)})
    assert "names an index" not in again.stderr


def test_malformed_requirement(user_project: UserProject) -> None:
    """A broken requirement line is named by file and line."""
    (user_project.path / "requirements.txt").write_text("requests==2.32.3\nprivpkg @@ nothing\n")
    done = user_project.inv("build-image")
    one_line_error(done, 2, "requirements.txt line 2")


def test_missing_requirements(user_project: UserProject) -> None:
    """No requirements file is one line, not a docker error later."""
    (user_project.path / "requirements.txt").unlink()
    done = user_project.inv("build-image")
    one_line_error(done, 2, "requirements.txt does not exist")


def test_requirements_flag_that_the_lock_leaves_out(user_project: UserProject) -> None:
    """`--requirements dev.txt` while a lock of another file is what builds install:
    one line, not a build that quietly installs the lock."""
    from securebuild_tasks.lockfile import find_input, finish

    path = user_project.path
    (path / "requirements.in").write_text("six\n")
    (path / "dev.txt").write_text("six\npytest\n")
    (path / "requirements.lock").write_text(
        finish(f"six==1.16.0 --hash=sha256:{'a' * 64}\n", find_input(path, ""))
    )
    for task in ("build-image", "vendor"):
        flag = ["--requirements", "dev.txt"] if task == "build-image" else []
        done = user_project.inv(task, *flag, SECUREBUILD_REQUIREMENTS="dev.txt")
        one_line_error(done, 2, "requirements is dev.txt, but builds install requirements.lock")
    assert sorted(p.name for p in path.iterdir()) == [
        "dev.txt",
        "known_hosts",
        "requirements.in",
        "requirements.lock",
        "requirements.txt",
        "tasks.py",
    ]


@pytest.mark.parametrize("task", ["build-image", "doctor", "vendor"])
def test_a_path_the_system_will_not_look_at_is_one_line(
    user_project: UserProject, task: str
) -> None:
    """A path setting with a name longer than the file system allows: one line
    naming it, not the OSError that `Path.is_file` passes on."""
    long = f"/tmp/{'x' * 300}"
    done = user_project.inv(task, SECUREBUILD_CONTEXT=long)
    one_line_error(done, 2, f"cannot use the path {long} (File name too long)")


def test_missing_dockerfile(user_project: UserProject) -> None:
    """A configured Dockerfile that does not exist is named."""
    done = user_project.inv("build-image", SECUREBUILD_DOCKERFILE="docker/Dockerfile.prod")
    one_line_error(done, 2, "Dockerfile.prod does not exist")


def test_unknown_git_host(user_project: UserProject) -> None:
    """A host missing from known_hosts fails closed, naming it and how to trust it."""
    (user_project.path / "known_hosts").write_text("")
    done = user_project.inv("build-image")
    line = one_line_error(done, 4, "127.0.0.1:2222 is not in", "ssh-keyscan -p 2222 127.0.0.1")
    assert "StrictHostKeyChecking=no" not in line


def test_no_agent(user_project: UserProject) -> None:
    """key_source=agent without an agent says how to start one."""
    done = user_project.inv("build-image", SECUREBUILD_KEY_SOURCE="agent")
    one_line_error(done, 3, "SSH_AUTH_SOCK is not set", "ssh-add")


def test_agent_socket_gone(user_project: UserProject, tmp_path: Path) -> None:
    """An SSH_AUTH_SOCK pointing nowhere is named."""
    done = user_project.inv(
        "build-image", SECUREBUILD_KEY_SOURCE="agent", SSH_AUTH_SOCK=str(tmp_path / "gone.sock")
    )
    one_line_error(done, 3, "gone.sock")


def test_empty_agent(user_project: UserProject) -> None:
    """An agent with no identity says to ssh-add one."""
    root = Path(tempfile.mkdtemp(prefix="sbt-agent-"))
    agent = Agent(root).start()
    try:
        done = user_project.inv(
            "build-image", SECUREBUILD_KEY_SOURCE="agent", SSH_AUTH_SOCK=str(agent.socket)
        )
    finally:
        agent.stop()
    one_line_error(done, 3, "holds no identity", "ssh-add")


def test_named_key_not_in_agent(user_project: UserProject, tmp_path: Path) -> None:
    """agent_key naming a key the agent lacks lists what the agent has."""
    root = Path(tempfile.mkdtemp(prefix="sbt-agent-"))
    agent = Agent(root).start()
    key = make_key(tmp_path / "agentkeys", "laptop-key")
    try:
        agent.add(key)
        done = user_project.inv(
            "build-image",
            SECUREBUILD_KEY_SOURCE="agent",
            SSH_AUTH_SOCK=str(agent.socket),
            SECUREBUILD_AGENT_KEY="deploy@ci",
        )
    finally:
        agent.stop()
    one_line_error(done, 3, "deploy@ci", key.fingerprint, "laptop-key")


def test_key_file_missing(user_project: UserProject, tmp_path: Path) -> None:
    """A key file that does not exist is named."""
    done = user_project.inv("build-image", SECUREBUILD_KEY_FILE=str(tmp_path / "id_nope"))
    one_line_error(done, 3, "id_nope does not exist")


def test_key_file_is_public_half(user_project: UserProject) -> None:
    """Giving the .pub file says to give the private half."""
    key_file = user_project.env["SECUREBUILD_KEY_FILE"] + ".pub"
    done = user_project.inv("build-image", SECUREBUILD_KEY_FILE=key_file)
    one_line_error(done, 3, "not a private key", ".pub")


def test_encrypted_key_without_terminal(user_project: UserProject, tmp_path: Path) -> None:
    """An encrypted key with no stored passphrase and no terminal says what to do."""
    key = make_key(tmp_path / "enc", "enc-key", passphrase="s3cret passphrase")
    done = user_project.inv(
        "build-image",
        SECUREBUILD_KEY_FILE=str(key.private),
        SECUREBUILD_PASSPHRASE_SOURCE="prompt",
    )
    one_line_error(done, 3, "no terminal", "store-key")


def test_no_keyring_backend(user_project: UserProject) -> None:
    """With no keyring backend the error says what to install."""
    done = user_project.inv(
        "build-image",
        SECUREBUILD_KEY_SOURCE="keyring",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    one_line_error(done, 3, "no keyring backend", "secretstorage")


def test_wrong_passphrase_is_not_stored(user_project: UserProject, tmp_path: Path) -> None:
    """store-key checks a passphrase before storing it, so a typo is caught at once."""
    key = make_key(tmp_path / "enc", "enc-key", passphrase="right one")
    done = user_project.inv(
        "store-key",
        "--key-file",
        str(key.private),
        "--passphrase-only",
        input="wrong one\n",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    # The keyring is checked only after the key: a wrong passphrase is found first.
    one_line_error(done, 3, "wrong passphrase")


def test_no_docker_daemon(user_project: UserProject) -> None:
    """An unreachable daemon is named with where it was looked for."""
    done = user_project.inv(
        "build-image",
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        SECUREBUILD_DOCKER=_fake_docker(user_project.path, "20.10.24", buildx=False),
    )
    one_line_error(done, 5, "cannot reach the Docker daemon", "unix:///nonexistent/docker.sock")


def test_no_buildkit(user_project: UserProject) -> None:
    """A docker client that cannot run BuildKit says to install buildx."""
    fake = _fake_docker(user_project.path, "28.2.2", buildx=False)
    done = user_project.inv("build-image", SECUREBUILD_DOCKER=fake)
    one_line_error(done, 5, "no docker client here can run BuildKit", "28.2.2", "buildx")


def _fake_docker(directory: Path, version: str, *, buildx: bool) -> str:
    """A stand-in docker client that only answers version questions."""
    script = directory / "fake-docker"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then echo {version}; exit 0; fi\n'
        f'if [ "$1" = buildx ]; then {"echo v0.12; exit 0" if buildx else "exit 1"}; fi\n'
        'if [ "$1" = info ]; then echo "Cannot connect to the Docker daemon" >&2; exit 1; fi\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    return str(script)


def test_key_file_is_a_directory(user_project: UserProject, tmp_path: Path) -> None:
    """A key path that is a directory (unreadable as a key) is named."""
    done = user_project.inv("build-image", SECUREBUILD_KEY_FILE=str(tmp_path))
    one_line_error(done, 3, "is a directory")


def test_keyring_entry_missing(user_project: UserProject) -> None:
    """key_source=keyring with nothing stored says how to store a key."""
    probe = subprocess.run(
        [sys.executable, "-c", "import keyring; print(keyring.get_keyring().priority)"],
        env=user_project.env,
        capture_output=True,
        text=True,
        check=False,
    )
    need(
        probe.returncode == 0 and float(probe.stdout.strip() or 0) >= 1,
        "no secure keyring backend; run the tests with `inv test`",
    )
    done = user_project.inv(
        "build-image",
        SECUREBUILD_KEY_SOURCE="keyring",
        SECUREBUILD_KEYRING_SERVICE=f"securebuild-missing-{os.getpid()}",
    )
    one_line_error(done, 3, "no key in the keyring", "inv store-key")


def _assert_past_the_context_check(user_project: UserProject, tmp_path: Path, key: Path) -> None:
    """The build gets past the context check: it stops at the (absent) daemon instead."""
    allowed = user_project.inv(
        "build-image",
        SECUREBUILD_KEY_FILE=str(key),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        SECUREBUILD_DOCKER=_fake_docker(tmp_path, "20.10.24", buildx=False),
    )
    one_line_error(allowed, 5, "cannot reach the Docker daemon")


def test_key_inside_context_is_refused(user_project: UserProject, tmp_path: Path) -> None:
    """A key file in the build context, not in .dockerignore, would be sent: refused."""
    key = make_key(user_project.path, "deploy_key")
    done = user_project.inv("build-image", SECUREBUILD_KEY_FILE=str(key.private))
    one_line_error(done, 2, "key_file", "inside the build context", ".dockerignore")
    (user_project.path / ".dockerignore").write_text("# keys stay out\ndeploy_key*\n")
    _assert_past_the_context_check(user_project, tmp_path, key.private)


def test_dockerfile_specific_ignore_file_is_the_one_checked(
    user_project: UserProject, tmp_path: Path
) -> None:
    """BuildKit applies `<Dockerfile>.dockerignore` instead of `.dockerignore`
    when it exists: a key that only `.dockerignore` excludes would be sent."""
    key = make_key(user_project.path, "deploy_key")
    (user_project.path / ".dockerignore").write_text("deploy_key*\n")
    (user_project.path / "Dockerfile").write_text("FROM scratch\nRUN --mount=type=ssh true\n")
    (user_project.path / "Dockerfile.dockerignore").write_text("vendor/\n")
    done = user_project.inv("build-image", SECUREBUILD_KEY_FILE=str(key.private))
    one_line_error(done, 2, "key_file", "inside the build context", "Dockerfile.dockerignore")
    (user_project.path / "Dockerfile.dockerignore").write_text("vendor/\ndeploy_key*\n")
    _assert_past_the_context_check(user_project, tmp_path, key.private)


def test_dotenv_inside_context_is_refused(user_project: UserProject) -> None:
    """A .env in the context must be excluded before a build sends it anywhere."""
    (user_project.path / ".env").write_text("SECUREBUILD_TAG=v1\n")
    done = user_project.inv("build-image")
    one_line_error(done, 2, "env_file", ".env", ".dockerignore")


@pytest.mark.parametrize("task", ["store-token", "store-key"])
def test_ctrl_d_at_a_hidden_prompt_is_one_line(tmp_path: Path, task: str) -> None:
    """Ctrl-D at the token or passphrase prompt ends the task in one line, storing nothing."""
    key = make_key(tmp_path / "keys", "enc", passphrase="open sesame")
    args = [task] if task == "store-token" else [task, "--key-file", str(key.private)]
    env = user_env(SECUREBUILD_INDEX_URL="https://pypi.example.com/simple/")
    code, out = run_in_pty("securebuild_tasks", tmp_path, *args, env=env, timeout=60, typed=b"\x04")
    text = out.decode(errors="replace")
    assert code == 3, text
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("securebuild: error: ")
    assert "standard input ended" in text


def test_vendor_where_a_file_stands_in_the_way(user_project: UserProject) -> None:
    """A file where the wheelhouse's folder would be is one line; a vendor run that
    fails leaves none of the folders it made for the wheelhouse behind."""
    (user_project.path / "vendor").write_text("not a folder\n")
    done = user_project.inv("vendor")
    one_line_error(done, 2, "cannot make the wheelhouse", "move it away")
    assert (user_project.path / "vendor").read_text() == "not a folder\n"

    (user_project.path / "vendor").unlink()
    nowhere = {"SECUREBUILD_DOCKER": str(user_project.path / "no-such-docker")}
    failed = user_project.inv("vendor", "--wheelhouse", "deps/wheels/python", **nowhere)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    assert not (user_project.path / "deps").exists()


@pytest.mark.parametrize("task", ["forget-key", "doctor"])
def test_a_keyring_backend_that_cannot_be_loaded(user_project: UserProject, task: str) -> None:
    """PYTHON_KEYRING_BACKEND naming a backend that is not installed: one line (a
    FAIL line in doctor) naming the variable, not keyring's import traceback."""
    done = user_project.inv(
        task, PYTHON_KEYRING_BACKEND="nosuch_sbt.Backend", SECUREBUILD_KEY_SOURCE="keyring"
    )
    assert "Traceback" not in done.stderr + done.stdout
    said = "the keyring backend named by PYTHON_KEYRING_BACKEND=nosuch_sbt.Backend cannot be loaded"
    if task == "doctor":
        assert done.returncode == 1
        assert said in done.stdout
    else:
        one_line_error(done, 3, said)


def test_hints_name_the_command_that_runs(user_project: UserProject) -> None:
    """A hint tells to run another task: under `securebuild` it says `securebuild
    TASK`, which works without a tasks.py; under inv, `inv TASK`."""
    bad = {"SECUREBUILD_LOCK_FILE": "requirements.lock"}
    (user_project.path / "requirements.lock").write_text("six==1.16.0\n")  # no lock header
    under_inv = user_project.inv("build-image", **bad)
    line = one_line_error(under_inv, 2, "`inv lock`")
    standalone = run_cli(
        "securebuild_tasks", user_project.path, "build-image", env={**user_project.env, **bad}
    )
    assert one_line_error(standalone, 2, "`securebuild lock`") == line.replace(
        "`inv ", "`securebuild "
    )


def test_hints_name_the_task_as_a_namespaced_tasks_py_calls_it(
    user_project: UserProject,
) -> None:
    """A tasks.py that holds the tool's tasks in a collection of their own calls
    them `securebuild.TASK`: hints name them so, and doctor's fixes too."""
    (user_project.path / "tasks.py").write_text(
        "import securebuild_tasks\nfrom invoke import Collection\n"
        "ns = Collection(securebuild_tasks.ns)\n"
    )
    bad = {"SECUREBUILD_LOCK_FILE": "requirements.lock"}
    (user_project.path / "requirements.lock").write_text("six==1.16.0\n")  # no lock header
    done = user_project.inv("securebuild.build-image", **bad)
    one_line_error(done, 2, "`inv securebuild.lock`")
    doctor = user_project.inv("securebuild.doctor", **bad)
    assert "`inv securebuild.lock`" in doctor.stdout
    assert "`inv lock`" not in doctor.stdout
    standalone = run_cli(
        "securebuild_tasks", user_project.path, "doctor", env={**user_project.env, **bad}
    )
    assert "`securebuild lock`" in standalone.stdout


def test_an_encrypted_key_on_standard_input_with_no_terminal(
    user_project: UserProject, tmp_path: Path
) -> None:
    """The key piped in uses standard input up: its passphrase can only come from a
    terminal. Without one (a new session has none), one line says so and what
    to do, instead of asking to pipe what cannot be piped."""
    key = make_key(tmp_path / "enc", "enc-key", passphrase="s3cret passphrase")
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "store-key", "--key-file", "-"],
        cwd=user_project.path,
        env={**user_project.env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
        input=key.private_bytes,
        capture_output=True,
        start_new_session=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.decode().strip().splitlines() == [
        "securebuild: error: the key from standard input is encrypted, and there is no"
        " terminal to type its passphrase at (standard input held the key): run it in a"
        " terminal, or give the key's path (--key-file PATH) and pipe the passphrase"
    ]
