"""Property 1: no key bytes anywhere a real `inv build-image` leaves something behind.

One test, two real builds with one key made for it (each build costs 10-30 s):

- the template's `wheels` stage alone (`--target wheels`), key from the
  keyring, run under a real pseudo-terminal with BuildKit's tty progress;
- the final image, key from the user's ssh-agent, plain progress, `--json`,
  `--no-cache` (the private step runs again, with this key source) and
  BuildKit's inline cache (`BUILDKIT_INLINE_CACHE=1` through the tool's
  `build_args` setting), which writes cache metadata into the image config.

Searched for the key's bytes: every layer tarball (`docker save`), `docker
history --no-trunc` and `docker image inspect` of both images, the stored image
config with the inline cache in it, both builds' output, the `--json` summary,
and every file under the test's TMPDIR, a throwaway HOME given to the tool and
the project directory. The daemon's data root (which holds BuildKit's cache) is
searched after builds of every key source in
tests/integration/test_build_image.py::test_*_leaks_nothing.

An exported cache (`cache_to`, buildx `--cache-to type=local,mode=max`) is
searched blob by blob, each layer decompressed, on the second engine (Docker 28
with the containerd image store): buildx's docker driver cannot export a cache
from the 20.10 one. The same search is first shown to find the key in a cache
exported from the old recipe.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine
from tests.support.cli import run_in_pty
from tests.support.fixtures import (
    BASE_IMAGE,
    Lab,
    ModernEngine,
    Project,
    securebuild_leftovers,
)
from tests.support.layers import GZIP
from tests.support.leaks import (
    HEADER,
    cache_leaks,
    find_in_bytes,
    find_in_tree,
    image_config,
    image_leaks,
    key_needles,
    raw_needles,
)
from tests.support.old_recipe import OLD_RECIPE
from tests.support.realparts import Agent, make_key

pytestmark = pytest.mark.engine

INLINE_CACHE = b"moby.buildkit.cache.v0"
# BuildKit's tty renderer: a "[+] Building" header redrawn with cursor movement.
TTY_HEADER = re.compile(rb"\[\+\] Building \d+\.\d+s \(\d+/\d+\)")
CURSOR_UP = re.compile(rb"\x1b\[\d*A")
# Plain progress: one "#N ..." line per step event.
PLAIN_STEP = re.compile(rb"(?m)^#\d+ \[")


def _docker(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [engine.docker, *args], capture_output=True, text=True, check=False, timeout=300
    )


def test_no_key_bytes_after_target_and_final_builds(
    project: Project,
    agent: Agent,
    lab: Lab,
    engine: Engine,
    base_image: str,
    keyring_ready: None,
    tmp_path: Path,
    private_tmpdir: Path,
) -> None:
    """Both builds succeed and no byte of the key is in any image, output or file left."""
    key = make_key(tmp_path / "keys", "p1-key")  # outside every searched directory
    lab.server.authorize(key)
    needles = key_needles(key.private_bytes)
    binary = needles + raw_needles(key.private_bytes)
    home = tmp_path / "home"
    home.mkdir()
    env = {**project.env, "HOME": str(home)}
    name = project.image.rsplit(":", 1)[0]
    stage = f"{name}:wheels"

    stored = project.inv("store-key", "--key-file", str(key.private), env=env)
    assert stored.returncode == 0, stored.stderr
    try:
        code, tty = run_in_pty(
            "invoke",
            project.path,
            "build-image",
            "--target",
            "wheels",
            "--tag",
            "wheels",
            env={
                **env,
                "SECUREBUILD_KEY_SOURCE": "keyring",
                "SECUREBUILD_PROGRESS": "tty",
                "TERM": "xterm-256color",
            },
        )
    finally:
        forgot = project.inv("forget-key", env=env)
    try:
        assert code == 0, tty[-3000:].decode(errors="replace")
        assert forgot.returncode == 0, forgot.stderr
        # BuildKit's own tty rendering, not plain progress written to a terminal.
        assert TTY_HEADER.search(tty), tty[-2000:]
        assert CURSOR_UP.search(tty), tty[-2000:]
        assert not PLAIN_STEP.search(tty), tty[-2000:]
        assert b"from keyring" in tty
        # The stage image holds the private package's wheel: the private step ran in it.
        wheels = _docker(engine, "run", "--rm", "--network", "none", stage, "ls", "/wheels")
        assert wheels.returncode == 0, wheels.stderr
        assert re.search(r"(?m)^privpkg-1\.0\.0-.*\.whl$", wheels.stdout), wheels.stdout

        agent.add(key)
        final = project.inv(
            "build-image",
            "--json",
            "--no-cache",
            env={
                **env,
                "SSH_AUTH_SOCK": str(agent.socket),
                "SECUREBUILD_KEY_SOURCE": "agent",
                "SECUREBUILD_PROGRESS": "plain",
                "SECUREBUILD_BUILD_ARGS": "BUILDKIT_INLINE_CACHE=1",
            },
        )
        assert final.returncode == 0, final.stderr[-3000:]
        assert PLAIN_STEP.search(final.stderr.encode()), final.stderr[-2000:]
        summary = json.loads(final.stdout)
        assert summary["image"] == project.image
        assert summary["key_source"] == "agent"
        assert summary["key_fingerprint"] == key.fingerprint
        ran = _docker(engine, "run", "--rm", "--network", "none", project.image)
        assert ran.stdout.strip() == "1.0.0", ran.stderr

        # The images: every layer, history, inspect; the raw config with the inline cache.
        for image in (stage, project.image):
            assert image_leaks(engine.docker, image, needles, base_image) == {}, image
        config = image_config(engine.docker, project.image)
        assert INLINE_CACHE in config  # the inline cache really is in the config searched
        assert find_in_bytes(config, binary) == []
        assert not HEADER.search(config)

        # Everything the tool printed, to a terminal or to pipes.
        for output in (tty, final.stdout.encode(), final.stderr.encode(), stored.stderr.encode()):
            assert find_in_bytes(output, binary) == []
            assert not HEADER.search(output)

        # Every file the run could have written: TMPDIR, HOME, the project.
        for tree in (private_tmpdir, home, project.path):
            assert find_in_tree(tree, needles) == [], tree
        assert securebuild_leftovers() == []
    finally:
        _docker(engine, "image", "rm", "-f", stage)


def test_exported_cache_search_finds_the_old_recipes_key(
    modern_engine: ModernEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache search can fail: the old recipe's exported cache holds its key
    (in the intermediate stage's layer and the build arg's cache record)."""
    key = make_key(tmp_path / "keys", "p1-old-recipe")
    context = tmp_path / "old"
    context.mkdir()
    (context / "Dockerfile").write_text(OLD_RECIPE)
    cache = tmp_path / "old-cache"
    built = modern_engine.run(
        "buildx", "build", "--network", "host", "--allow", "network.host",
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg", f"SSH_PRIVATE_KEY={key.private_bytes.decode()}",
        "--cache-to", f"type=local,dest={cache},mode=max", str(context),
        check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    monkeypatch.setenv("DOCKER_HOST", modern_engine.env["DOCKER_HOST"])
    found = cache_leaks(cache, key_needles(key.private_bytes), modern_engine.docker, BASE_IMAGE)
    assert found, "the old recipe's key was not found in its exported cache"
    assert any("private key header" in hits for hits in found.values()), found


def test_image_search_reads_the_containerd_stores_gzip_layers(
    modern_engine: ModernEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image search can fail on an engine with the containerd image store,
    whose `docker save` writes the layers gzip'd: a key copied into a layer is
    found, in its bytes and by its header."""
    key = make_key(tmp_path / "keys", "p1-gzip-layer")
    context = tmp_path / "gzip-layer"
    context.mkdir()
    (context / "id_key").write_bytes(key.private_bytes)
    (context / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY id_key /root/.ssh/id_rsa\n")
    image = f"sbt-gzip-layer-{os.getpid()}"
    built = modern_engine.run("build", "--tag", image, str(context), check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    monkeypatch.setenv("DOCKER_HOST", modern_engine.env["DOCKER_HOST"])
    try:
        saved = tmp_path / "saved.tar"
        modern_engine.run("save", "--output", str(saved), image)
        with tarfile.open(saved) as archive:
            manifest = archive.extractfile("manifest.json")
            assert manifest is not None
            top = archive.extractfile(json.load(manifest)[0]["Layers"][-1])
            assert top is not None
            assert top.read(2) == GZIP  # what a plain byte search could not read
        found = image_leaks(modern_engine.docker, image, key_needles(key.private_bytes), BASE_IMAGE)
        assert "docker save" in found
        assert found.get("docker save (added layers)") == ["private key header"]
    finally:
        modern_engine.run("image", "rm", "-f", image, check=False)


def test_no_key_bytes_in_an_exported_cache(
    project: Project,
    lab: Lab,
    modern_engine: ModernEngine,
    tmp_path: Path,
    private_tmpdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`cache_to` exports every stage's cache (mode=max) with no key bytes in any
    blob; `cache_from` then rebuilds the private step from it, on an engine whose
    own cache was emptied, without fetching again."""
    key = make_key(tmp_path / "keys", "p1-cache-key")
    lab.server.authorize(key)
    needles = key_needles(key.private_bytes)
    cache = tmp_path / "exported-cache"
    env = {
        **project.env,
        **modern_engine.env,
        "SECUREBUILD_KEY_SOURCE": "file",
        "SECUREBUILD_KEY_FILE": str(key.private),
        "SECUREBUILD_PROGRESS": "plain",
        "SECUREBUILD_CACHE_TO": f"type=local,dest={cache},mode=max",
    }
    exported = project.inv("build-image", env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert " with buildx (" in exported.stderr
    assert (cache / "index.json").is_file()
    assert len(list((cache / "blobs" / "sha256").iterdir())) > 2
    monkeypatch.setenv("DOCKER_HOST", modern_engine.env["DOCKER_HOST"])
    assert cache_leaks(cache, needles, modern_engine.docker, BASE_IMAGE) == {}
    for output in (exported.stdout, exported.stderr):
        assert find_in_bytes(output.encode(), needles) == []

    modern_engine.run("builder", "prune", "--all", "--force")
    reused = project.inv(
        "build-image",
        env={
            **env,
            "SECUREBUILD_CACHE_TO": "",
            "SECUREBUILD_CACHE_FROM": f"type=local,src={cache}",
        },
    )
    assert reused.returncode == 0, reused.stderr[-3000:]
    private_step = re.search(
        r"(?m)^(#\d+) \[installed-wheels \d+/\d+\] RUN --mount=type=ssh", reused.stderr
    )
    assert private_step, reused.stderr[-3000:]
    assert f"{private_step.group(1)} CACHED" in reused.stderr, reused.stderr[-3000:]
    ran = modern_engine.run("run", "--rm", "--network", "none", project.image)
    assert ran.stdout.strip() == "1.0.0", ran.stderr
    assert image_leaks(modern_engine.docker, project.image, needles, BASE_IMAGE) == {}
    for tree in (private_tmpdir, project.path):
        assert find_in_tree(tree, needles) == [], tree
    assert securebuild_leftovers() == []
    modern_engine.run("image", "rm", "-f", project.image, check=False)
