"""Task flags reach docker's argv, and nothing secret does.

A recording stand-in for the docker client answers version and info questions
and writes every build argv to a file, so the exact command line can be read
back without an engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from securebuild_tasks.build import template_path
from tests.support.cli import run_cli, stand_in_docker, user_env
from tests.support.fixtures import securebuild_leftovers
from tests.support.leaks import find_in_tree, key_needles
from tests.support.realparts import make_key

RECORDER = """\
#!/bin/sh
case "$1" in
  version) echo 20.10.24; exit 0 ;;
  buildx) exit 1 ;;
  info) echo 20.10.24; exit 0 ;;
  image) echo '[{"Id": "sha256:0123456789abcdef0123", "Size": 1000000, "RepoTags": []}]'; exit 0 ;;
  build)
    printf '%s\\n' "$@" > "$RECORD"; env > "$RECORD.env"
    for arg in "$@"; do
      case "$arg" in id=netrc,src=*) cp "${arg#id=netrc,src=}" "$RECORD.netrc" ;; esac
    done
    if [ -n "$HOLD" ]; then touch "$HOLD"; sleep 60; fi
    exit 0 ;;
esac
exit 1
"""


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A project and an environment whose docker records its build argv."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "tasks.py").write_text(
        "import securebuild_tasks\nfrom invoke import Collection\n"
        "ns = Collection()\nsecurebuild_tasks.add_to(ns)\n"
    )
    (project / "requirements.txt").write_text("six==1.16.0\n")
    docker = stand_in_docker(tmp_path, RECORDER)
    key = make_key(tmp_path / "keys", "deploy")
    env = user_env(
        RECORD=str(tmp_path / "argv"),
        DOCKER_HOST="unix:///nonexistent/docker.sock",  # the SDK fails; the CLI answers
        SECUREBUILD_DOCKER=str(docker),
        SECUREBUILD_KEY_FILE=str(key.private),
        SECUREBUILD_KNOWN_HOSTS=str(tmp_path / "known_hosts"),
    )
    return project, env


def _refused(project: Path, env: dict[str, str]) -> str:
    """The one line `inv build-image` ends with when it refuses its settings."""
    done = run_cli("invoke", project, "build-image", env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


def _build(project: Path, env: dict[str, str], *flags: str) -> list[str]:
    done = run_cli("invoke", project, "build-image", *flags, env=env)
    assert done.returncode == 0, done.stderr
    return Path(env["RECORD"]).read_text().splitlines()


def test_flags_reach_the_docker_command(recorded: tuple[Path, dict[str, str]]) -> None:
    """--no-cache, --tag, --target, --network and --platform all land in argv."""
    project, env = recorded
    argv = _build(
        project,
        env,
        "--no-cache",
        "--tag",
        "v2",
        "--target",
        "runtime",
        "--network",
        "host",
        "--platform",
        "linux/amd64",
        "--image",
        "shop/api",
    )
    assert "--no-cache" in argv
    assert argv[argv.index("--tag") + 1] == "shop/api:v2"
    assert argv[argv.index("--target") + 1] == "runtime"
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--platform") + 1] == "linux/amd64"
    assert "--no-cache" not in _build(project, env)


def test_setting_flags_win_over_the_environment(recorded: tuple[Path, dict[str, str]]) -> None:
    """A task's setting flag outranks SECUREBUILD_*; without it the environment decides;
    a bad value is one line naming the flag."""
    project, env = recorded
    env = {**env, "SECUREBUILD_INSTALLER": "uv"}
    assert "INSTALLER=pip" in _build(project, env, "--installer", "pip")
    assert "INSTALLER=uv" in _build(project, env)
    assert "INSTALLER=auto" in _build(
        project, {k: v for k, v in env.items() if "INSTALLER" not in k}
    )
    done = run_cli("invoke", project, "build-image", "--installer", "poetry", env=env)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "installer" in last
    assert "poetry" in last
    assert "Traceback" not in done.stderr


def test_no_key_bytes_in_argv_or_environment(
    recorded: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The docker child sees an agent socket path, never the key, in argv or environment."""
    project, env = recorded
    argv = _build(project, env)
    child_env = Path(env["RECORD"] + ".env").read_text()
    key = (tmp_path / "keys" / "deploy").read_bytes()
    for needle in key_needles(key):
        assert needle.decode() not in "\n".join(argv)
        assert needle.decode() not in child_env
    ssh = argv[argv.index("--ssh") + 1]
    assert ssh.startswith("default=")
    assert ssh.endswith("agent.sock")
    assert "SSH_AUTH_SOCK" not in child_env
    assert json.dumps(argv).count("PRIVATE KEY") == 0


def _fetch_over_ssh(project: Path, env: dict[str, str]) -> None:
    """Give the recorded project a git dependency over SSH, its host pinned."""
    host_key = make_key(Path(env["RECORD"]).parent / "host", "host")
    kind, body = host_key.public_line.split()[:2]
    Path(env["SECUREBUILD_KNOWN_HOSTS"]).write_text(f"[127.0.0.1]:2222 {kind} {body}\n")
    with (project / "requirements.txt").open("a") as requirements:
        requirements.write("private @ git+ssh://git@127.0.0.1:2222/org/private.git@v1\n")


def test_json_summary_on_stdout(recorded: tuple[Path, dict[str, str]]) -> None:
    """--json prints one JSON object on stdout; progress stays on stderr. With only
    index packages no key is forwarded; with a git dependency over SSH, the key."""
    project, env = recorded
    keyless = run_cli("invoke", project, "build-image", "--json", env=env)
    assert keyless.returncode == 0, keyless.stderr
    assert json.loads(keyless.stdout)["key_source"] == "none"
    assert json.loads(keyless.stdout)["key_fingerprint"] is None
    assert "with no key (nothing is fetched over SSH)" in keyless.stderr
    _fetch_over_ssh(project, env)
    done = run_cli("invoke", project, "build-image", "--json", "--tag", "v3", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["image"] == "app:v3"
    assert summary["id"] == "sha256:0123456789abcdef0123"
    assert summary["size"] == 1000000
    assert summary["key_source"] == "file"
    assert summary["key_fingerprint"].startswith("SHA256:")
    assert summary["offline"] is False
    assert summary["audit"] is None
    assert "securebuild: built app:v3" in done.stderr
    assert "securebuild: audit: not run" in done.stderr


def test_index_token_reaches_docker_only_as_a_netrc_secret(
    recorded: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """With index_url, SECUREBUILD_INDEX_TOKEN is in neither docker's argv nor its
    environment; docker gets a .netrc secret holding it, and the file is gone after
    the build. The URL travels as the INDEX_URL build arg."""
    project, env = recorded
    token = "tok-" + "9f3c" * 10
    env = {
        **env,
        "SECUREBUILD_INDEX_URL": "https://pypi.example.com/simple/",
        "SECUREBUILD_INDEX_TOKEN": token,
    }
    argv = _build(project, env)
    child_env = Path(env["RECORD"] + ".env").read_text()
    assert token not in "\n".join(argv)
    assert token not in child_env
    assert "SECUREBUILD_INDEX_TOKEN" not in child_env
    assert argv[argv.index("--build-arg") + 1 :].count("INDEX_URL=https://pypi.example.com/simple/")
    secret = next(a for a in argv if a.startswith("id=netrc,src="))
    netrc = Path(env["RECORD"] + ".netrc").read_text()
    assert netrc == f"machine pypi.example.com login __token__ password {token}\n"
    assert not Path(secret.partition("src=")[2]).exists()
    assert token not in json.dumps(argv)


def test_interrupted_build_leaves_no_netrc(
    recorded: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """SIGTERM while docker runs: exit non-zero, the .netrc with the token is removed."""
    project, env = recorded
    token = "tok-" + "77ab" * 10
    hold = tmp_path / "holding"
    env = {
        **env,
        "HOLD": str(hold),
        "SECUREBUILD_INDEX_URL": "https://pypi.example.com/simple/",
        "SECUREBUILD_INDEX_TOKEN": token,
    }

    def netrc_written() -> None:
        assert token in Path(env["RECORD"] + ".netrc").read_text()

    code, stderr = _signal_while_held(
        "build-image", project, env, hold, signal.SIGTERM, netrc_written
    )
    assert code != 0
    assert "Traceback" not in stderr
    assert securebuild_leftovers() == []
    assert find_in_tree(Path(tempfile.gettempdir()), [token.encode()]) == []


def _signal_while_held(
    task: str,
    project: Path,
    env: dict[str, str],
    hold: Path,
    signum: int,
    then: Callable[[], None] = lambda: None,
) -> tuple[int, str]:
    """Run ``inv TASK``; once the docker stand-in touched ``hold``, run ``then`` and
    send ``signum``. The exit code and standard error."""
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", task],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not hold.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "docker stand-in never started"
            time.sleep(0.05)
        then()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr


BUILDX_RECORDER = RECORDER.replace(
    "  buildx) exit 1 ;;",
    '  buildx) case "$2" in\n'
    "      version) echo 'github.com/docker/buildx v0.17.1'; exit 0 ;;\n"
    '      build) printf \'%s\\n\' "$@" > "$RECORD"; exit 0 ;;\n'
    "    esac; exit 1 ;;",
)


def test_named_buildx_builder(recorded: tuple[Path, dict[str, str]]) -> None:
    """buildx_builder reaches `docker buildx build --builder NAME`; buildx builds
    ask for host networking only with network=host and load the image back; a
    client without buildx refuses the setting in one line."""
    project, env = recorded
    docker = Path(env["SECUREBUILD_DOCKER"])
    classic = docker.read_text()
    docker.write_text(BUILDX_RECORDER)
    named = {**env, "SECUREBUILD_BUILDX_BUILDER": "shared"}
    argv = _build(project, named, "--network", "host")
    assert argv[:2] == ["buildx", "build"]
    assert argv[argv.index("--builder") + 1] == "shared"
    assert argv[argv.index("--allow") + 1] == "network.host"
    assert "--load" in argv
    plain = _build(project, named)
    assert "--allow" not in plain
    assert plain[plain.index("--builder") + 1] == "shared"
    current = _build(project, env, "--network", "host")
    assert "--builder" not in current
    assert current[current.index("--allow") + 1] == "network.host"

    docker.write_text(classic)
    last = _refused(project, named)
    assert last.startswith("securebuild: error: setting buildx_builder names a buildx builder")
    assert "no buildx plugin" in last


def test_cache_settings_reach_buildx(recorded: tuple[Path, dict[str, str]]) -> None:
    """cache_from / cache_to reach `docker buildx build --cache-from/--cache-to`, a
    local directory made absolute against the project and quoted for docker's CSV
    reader; a client without buildx refuses them in one line."""
    project, env = recorded
    docker = Path(env["SECUREBUILD_DOCKER"])
    classic = docker.read_text()
    docker.write_text(BUILDX_RECORDER)
    cached = {
        **env,
        "SECUREBUILD_CACHE_FROM": "type=local,src=../shared cache",
        # Written as docker reads it: one CSV record, a comma quoted.
        "SECUREBUILD_CACHE_TO": 'type=local,"dest=../cache, exported",mode=max',
    }
    argv = _build(project, cached)
    cache_from = argv[argv.index("--cache-from") + 1]
    cache_to = argv[argv.index("--cache-to") + 1]
    assert cache_from == f"type=local,src={project}/../shared cache"
    assert cache_to == f'type=local,"dest={project}/../cache, exported",mode=max'
    registry = {**env, "SECUREBUILD_CACHE_TO": "type=registry,ref=127.0.0.1:5000/app:cache"}
    argv = _build(project, registry)
    assert argv[argv.index("--cache-to") + 1] == "type=registry,ref=127.0.0.1:5000/app:cache"
    assert "--cache-from" not in argv

    docker.write_text(classic)
    last = _refused(project, cached)
    assert last.startswith("securebuild: error: setting cache_to needs docker buildx")


def test_cache_directory_inside_the_context_is_refused(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    """An exported cache holds every stage's layers, private code included: a local
    cache directory the next build would send with the context is refused, even
    before it exists, unless the ignore file excludes it."""
    project, env = recorded
    docker = Path(env["SECUREBUILD_DOCKER"])
    docker.write_text(BUILDX_RECORDER)
    cached = {**env, "SECUREBUILD_CACHE_TO": "type=local,dest=.buildcache,mode=max"}
    last = _refused(project, cached)
    assert last.startswith("securebuild: error: cache_to ")
    assert ".buildcache is inside the build context" in last
    assert not (project / ".buildcache").exists()

    (project / ".dockerignore").write_text(".buildcache\n")
    argv = _build(project, cached)
    assert argv[argv.index("--cache-to") + 1] == f"type=local,dest={project}/.buildcache,mode=max"


LOCKER = """\
#!/bin/sh
case "$1" in
  version) echo 20.10.24; exit 0 ;;
  buildx) exit 1 ;;
  info) echo 20.10.24; exit 0 ;;
  build)
    for arg in "$@"; do
      case "$arg" in type=local,dest=*) dest="${arg#type=local,dest=}" ;; esac
    done
    printf 'six==1.16.0\\n' > "$dest/requirements.lock"
    # A resolution that has run for two hours, and another run starting now.
    touch -d '2 hours ago' "$dest"
    "$PYTHON" -c 'from securebuild_tasks.agent import reap_stale_workdirs; reap_stale_workdirs()'
    exit 0 ;;
esac
exit 1
"""


def test_a_long_lock_keeps_its_output_from_other_runs_reapers(
    recorded: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Another run's reaper removes dead runs' work dirs: never a lock's that is running."""
    project, env = recorded
    (project / "requirements.in").write_text("six\n")
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {
        **env,
        "SECUREBUILD_DOCKER": str(stand_in_docker(tmp_path / "locker", LOCKER)),
        "PYTHON": sys.executable,
        "TMPDIR": str(temp),
    }
    done = run_cli("invoke", project, "lock", env=env)
    assert done.returncode == 0, done.stderr
    assert (project / "requirements.lock").read_text().splitlines()[1:] == ["six==1.16.0"]
    assert list(temp.iterdir()) == []


def test_the_base_image_is_the_dockerfiles_unless_set(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    """`init --python 3.11` writes the base image into the project's Dockerfile:
    builds keep it (no BASE_IMAGE build arg over it), and `vendor`, which builds
    with the template, builds the wheels on it too. The setting, when given,
    wins for both; one that is no image reference is one line."""
    project, env = recorded
    init = run_cli("securebuild_tasks", project, "init", "--python", "3.11", env=env)
    assert init.returncode == 0, init.stderr
    argv = _build(project, env)
    assert not [arg for arg in argv if arg.startswith("BASE_IMAGE=")]
    run_cli("invoke", project, "vendor", env=env)
    assert "BASE_IMAGE=python:3.11-slim" in Path(env["RECORD"]).read_text().splitlines()

    chosen = {**env, "SECUREBUILD_BASE_IMAGE": "registry.example:5000/py@sha256:" + "0" * 64}
    assert f"BASE_IMAGE={chosen['SECUREBUILD_BASE_IMAGE']}" in _build(project, chosen)
    run_cli("invoke", project, "vendor", env=chosen)
    vendor_argv = Path(env["RECORD"]).read_text().splitlines()
    assert f"BASE_IMAGE={chosen['SECUREBUILD_BASE_IMAGE']}" in vendor_argv

    bad = _refused(project, {**env, "SECUREBUILD_BASE_IMAGE": "python 3.12"})
    assert bad == (
        "securebuild: error: setting base_image from environment variable SECUREBUILD_BASE_IMAGE"
        " is not a valid base_image: 'python 3.12': use an image reference such as python:3.12-slim"
    )


KEY_LISTER = RECORDER.replace(
    '    printf \'%s\\n\' "$@" > "$RECORD"; env > "$RECORD.env"\n',
    '    printf \'%s\\n\' "$@" > "$RECORD"; env > "$RECORD.env"\n'
    '    for arg in "$@"; do case "$arg" in default=*)\n'
    '      SSH_AUTH_SOCK="${arg#default=}" ssh-add -L > "$RECORD.keys" 2>&1;'
    ' echo "exit $?" >> "$RECORD.keys" ;; esac; done\n',
)


def test_no_key_reaches_a_build_that_fetches_nothing_over_ssh(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    """The build's agent socket, asked while the build runs, holds no key when the
    requirements name no SSH host, though a key is configured and an agent holds
    one; with a git dependency over SSH it holds that key. A Dockerfile of the
    user's own with SSH steps gets the key too: the tool cannot see their use."""
    project, env = recorded
    assert KEY_LISTER != RECORDER
    Path(env["SECUREBUILD_DOCKER"]).write_text(KEY_LISTER)
    keys = Path(env["RECORD"] + ".keys")
    key = Path(env["SECUREBUILD_KEY_FILE"])
    public = key.with_name(key.name + ".pub").read_text()

    _build(project, env)
    assert keys.read_text().splitlines() == ["The agent has no identities.", "exit 1"]

    own_steps = [
        "FROM python:3.12-slim\nRUN --mount=type=ssh git clone git@example.com:org/x\n",
        "FROM python:3.12-slim\nRUN --mount=id=default,type=ssh git clone git@x:org/y\n",
        # init's Dockerfile, with an SSH step of the user's own added
        template_path().read_text() + "RUN --mount=type=ssh,required=true git clone g@x:o/y\n",
    ]
    for dockerfile in own_steps:
        (project / "Dockerfile").write_text(dockerfile)
        _build(project, env)
        assert keys.read_text().split()[:2] == public.split()[:2], dockerfile
    (project / "Dockerfile").write_text(template_path().read_text())  # init's, unchanged
    _build(project, env)
    assert keys.read_text().splitlines() == ["The agent has no identities.", "exit 1"]
    (project / "Dockerfile").unlink()

    _fetch_over_ssh(project, env)
    _build(project, env)
    assert keys.read_text().split()[:2] == public.split()[:2]


def test_inv_from_a_subfolder_reads_the_project_where_its_tasks_py_is(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    """invoke finds tasks.py (and reads its invoke.yaml) upwards from a subfolder:
    the .env beside it and the relative settings are read from there too, so a
    build from src/ is the build from the project's folder."""
    project, env = recorded
    (project / "invoke.yaml").write_text("securebuild:\n  image: from-yaml\n")
    (project / ".env").write_text("SECUREBUILD_TAG=from-dotenv\n")
    (project / ".dockerignore").write_text(".env\n")
    (project / "src").mkdir()
    done = run_cli("invoke", project / "src", "build-image", env=env)
    assert done.returncode == 0, done.stderr
    argv = Path(env["RECORD"]).read_text().splitlines()
    assert argv[argv.index("--tag") + 1] == "from-yaml:from-dotenv"
    assert argv[-1] == str(project)


@pytest.mark.parametrize(
    "given",
    [
        'build_args: "COMPILE_BYTECODE=1,APP_ENV=prod"',
        "build_args:\n    COMPILE_BYTECODE: '1'\n    APP_ENV: prod",
        "build_args: [COMPILE_BYTECODE=1, APP_ENV=prod]",
    ],
)
def test_maps_in_invoke_yaml_as_text_a_mapping_or_a_list(
    recorded: tuple[Path, dict[str, str]], given: str
) -> None:
    """build_args (and secrets) in an invoke.yaml: the documented NAME=VALUE text,
    a YAML mapping and a list all reach the build alike."""
    project, env = recorded
    (project / "invoke.yaml").write_text(f"securebuild:\n  {given}\n")
    argv = _build(project, env)
    assert "APP_ENV=prod" in argv
    assert "COMPILE_BYTECODE=1" in argv


def test_a_key_file_that_can_be_read_once(recorded: tuple[Path, dict[str, str]]) -> None:
    """A key given as `--key-file <(pass show deploy-key)` (a pipe or a FIFO) can be
    read once: the build reads it once, checks it and forwards it."""
    project, env = recorded
    _fetch_over_ssh(project, env)
    key = Path(env["SECUREBUILD_KEY_FILE"])
    fifo = key.with_name("key-fifo")
    os.mkfifo(fifo, 0o600)  # as `<(pass show key)` makes it

    def serve() -> None:  # the key on the first read, nothing on any after it
        for data in (key.read_bytes(), b""):
            with fifo.open("wb") as writer:
                writer.write(data)

    writer = threading.Thread(target=serve, daemon=True)
    writer.start()
    try:
        done = run_cli(
            "invoke",
            project,
            "build-image",
            "--json",
            env={**env, "SECUREBUILD_KEY_FILE": str(fifo)},
        )
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # let a waiting writer go
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["key_source"] == "file"


def test_a_relative_key_file_is_the_same_file_for_every_reader(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    """Typed from src/, `--key-file id_deploy` is src/id_deploy: the context check
    sees the very file the key source would read, and refuses it inside the
    context. Written in the project's .env, a relative path is the project's."""
    project, env = recorded
    (project / "src").mkdir()
    key = Path(env["SECUREBUILD_KEY_FILE"])
    (project / "src" / "id_deploy").write_bytes(key.read_bytes())
    (project / "src" / "id_deploy").chmod(0o600)
    _fetch_over_ssh(project, env)  # the build needs the key
    typed = run_cli("invoke", project / "src", "build-image", "--key-file", "id_deploy", env=env)
    assert typed.returncode == 2, typed.stderr
    assert str(project / "src" / "id_deploy") in typed.stderr
    assert "inside the build context" in typed.stderr
    assert not Path(env["RECORD"]).exists()  # nothing was built

    outside = project.parent / "keys-outside"
    outside.mkdir()
    (outside / "deploy").write_bytes(key.read_bytes())
    (outside / "deploy").chmod(0o600)
    (project / "src" / "id_deploy").unlink()
    (project / ".env").write_text("SECUREBUILD_KEY_FILE=../keys-outside/deploy\n")
    (project / ".dockerignore").write_text(".env\n")
    written = run_cli(
        "invoke",
        project / "src",
        "build-image",
        "--json",
        env={k: v for k, v in env.items() if k != "SECUREBUILD_KEY_FILE"}
        | {"SECUREBUILD_KEY_SOURCE": "file"},
    )
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout)["key_source"] == "file"


def test_inv_dry_never_acts_for_real(recorded: tuple[Path, dict[str, str]]) -> None:
    """invoke's --dry echoes the shell commands a task runs through it; these tasks
    run none, so under --dry clean only lists, a task that would change anything
    stops in one line before it starts, and the read-only ones run."""
    project, env = recorded
    wheelhouse = project / "vendor" / "python"
    wheelhouse.mkdir(parents=True)
    (wheelhouse / "manifest.json").write_text('{"generator": "securebuild-tasks", "wheels": []}\n')
    listed = run_cli("invoke", project, "--dry", "clean", "--local-only", env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"would remove wheelhouse {wheelhouse}" in listed.stderr
    assert wheelhouse.is_dir()
    for argv in (["build-image"], ["lock"], ["vendor"], ["init"], ["forget-key"]):
        done = run_cli("invoke", project, "--dry", *argv, env=env)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.strip().splitlines() == [
            f"securebuild: error: --dry echoes the shell commands a task runs through invoke,"
            f" and {argv[0]} runs none, so it would act for real: nothing was done; run it"
            " without --dry (clean --dry-run lists what clean would remove)"
        ]
    assert not Path(env["RECORD"]).exists()
    assert wheelhouse.is_dir()
    assert not (project / "Dockerfile").exists()
    shown = run_cli("invoke", project, "--dry", "show-settings", env=env)
    assert shown.returncode == 0, shown.stderr


@pytest.mark.parametrize(("task", "signum"), [("lock", signal.SIGTERM), ("vendor", signal.SIGHUP)])
def test_a_signal_before_the_engine_answers_leaves_nothing(
    recorded: tuple[Path, dict[str, str]], tmp_path: Path, task: str, signum: int
) -> None:
    """The work folder and a wheelhouse's staging folder come before the engine's
    detection, which waits on a daemon that hangs: a signal then cleans up as one
    during the build does."""
    project, env = recorded
    (project / "requirements.in").write_text("six\n")
    hold = tmp_path / "holding"
    # exec: the query is the process the tool kills, as the docker CLI is.
    hanging = stand_in_docker(tmp_path / "hang", f'#!/bin/sh\ntouch "{hold}"\nexec sleep 30\n')
    env = {**env, "SECUREBUILD_DOCKER": str(hanging)}
    code, stderr = _signal_while_held(task, project, env, hold, signum)
    assert code != 0
    assert "Traceback" not in stderr
    assert securebuild_leftovers() == []
    assert sorted(p.name for p in project.iterdir()) == [
        "requirements.in",
        "requirements.txt",
        "tasks.py",
    ]
