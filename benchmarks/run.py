"""Benchmarks: securebuild-tasks against the old recipe and a hand-written Dockerfile.

Builds the same example app (one private git dependency over SSH, about fifteen
public packages, some with compiled wheels) three ways, side by side on one
engine, in one run:

- ``baseline-old``: the recipe this project replaces (key as a build arg,
  ``pip download`` into ``/vendor/python`` in a stage, copied and installed);
- ``baseline-hand``: a careful hand-written ``RUN --mount=type=ssh pip install``;
- ``securebuild``: ``inv build-image`` with this project's template.

Everything the builds fetch comes from 127.0.0.1: a real sshd serves the
private package, a local index serves the public wheels (downloaded once into
``~/.cache/securebuild-bench``). Cold builds empty the engine's BuildKit cache
(``docker builder prune``), so point ``DOCKER_HOST`` at a scratch daemon if
the cache of your usual one matters to you.

    python benchmarks/run.py              # 3 runs, prints the table
    python benchmarks/run.py --quick      # 1 run, small package set (smoke test)
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

# The test suite's real parts: the same sshd git server, index and agent the
# integration tests use, so the benchmark measures what the tests prove.
import securebuild_tasks  # noqa: E402
from securebuild_tasks.agent_protocol import list_identities  # noqa: E402
from securebuild_tasks.build import build_command, plan_build  # noqa: E402
from securebuild_tasks.engine import Engine, detect_engine, ping  # noqa: E402
from securebuild_tasks.errors import SecurebuildError  # noqa: E402
from securebuild_tasks.keys import ForwardedKey  # noqa: E402
from securebuild_tasks.settings import resolve  # noqa: E402
from tests.support.layers import added_files  # noqa: E402
from tests.support.realparts import (  # noqa: E402
    Agent,
    GitServer,
    PyPILikeIndex,
    SSHKey,
    build_backend_wheels,
    make_key,
)

BASE_IMAGE = os.environ.get("SBT_BASE_IMAGE", "securebuild-test/python:bookworm")
CACHE = Path(os.environ.get("SBT_BENCH_CACHE", Path.home() / ".cache/securebuild-bench"))
PYTHON_TAG = os.environ.get("SBT_BENCH_PYTHON", "3.11")  # the base image's Python
ADDED_DEPENDENCY = "tabulate"
QUICK_PUBLIC = ["attrs", "msgpack", "pyyaml"]
VARIANTS = ("baseline-old", "baseline-hand", "securebuild")

USER_TASKS = """\
from invoke import Collection
import securebuild_tasks

ns = Collection()
securebuild_tasks.add_to(ns)
"""


# ---------------------------------------------------------------------------
# The lab: private git server, public index, the user's agent with the key.


def public_packages(quick: bool) -> list[str]:
    """The example's public requirement names."""
    if quick:
        return list(QUICK_PUBLIC)
    lines = (HERE / "example" / "requirements.public.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def public_wheels(names: list[str]) -> Path:
    """Wheels of ``names`` (and their dependencies) for the base image's Python, cached."""
    wheels = build_backend_wheels(CACHE / "wheels")
    stamp = wheels / f".public-{PYTHON_TAG}.txt"
    wanted = sorted({*names, ADDED_DEPENDENCY})
    if stamp.is_file() and set(wanted) <= set(stamp.read_text().split()):
        return wheels
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    if platform.machine() in ("aarch64", "arm64"):
        platforms = [p.replace("x86_64", "aarch64") for p in platforms]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--python-version", PYTHON_TAG, "--implementation", "cp",
         "--abi", "cp" + PYTHON_TAG.replace(".", ""),
         *[arg for p in [*platforms, "any"] for arg in ("--platform", p)],
         "--dest", str(wheels), *wanted],
        check=True,
    )  # fmt: skip
    known = set(stamp.read_text().split()) if stamp.is_file() else set()
    stamp.write_text("\n".join(sorted(known | set(wanted))) + "\n")
    return wheels


@dataclass
class Lab:
    """Real parts on 127.0.0.1 shared by every variant."""

    root: Path
    server: GitServer
    index: PyPILikeIndex
    key: SSHKey
    agent: Agent
    private_url: str
    public: list[str]

    def requirements(self, *, added: bool = False, tag: str = "v1.0.0") -> str:
        """The example's requirements.txt."""
        names = [*self.public, *([ADDED_DEPENDENCY] if added else [])]
        return "\n".join([*names, f"privpkg @ git+{self.private_url}@{tag}"]) + "\n"


@contextmanager
def lab(quick: bool) -> Iterator[Lab]:
    """Start the git server (privpkg v1.0.0 and v1.1.0), the index and an agent."""
    names = public_packages(quick)
    wheels = public_wheels(names)
    root = Path(tempfile.mkdtemp(prefix="sbt-bench-"))
    server = GitServer(root / "git").start()
    index = PyPILikeIndex(wheels, root / "index").start()
    agent = Agent(root / "agent").start()
    try:
        key = make_key(root / "keys", "bench-deploy-key")
        server.authorize(key)
        agent.add(key)
        url = server.create_package("privpkg", "v1.0.0", "1.0.0")
        _tag_new_version(server, "privpkg", "v1.1.0", "1.1.0")
        (root / "known_hosts").write_text(server.known_hosts_line())
        yield Lab(root, server, index, key, agent, url, names)
    finally:
        agent.stop()
        index.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _tag_new_version(server: GitServer, name: str, tag: str, version: str) -> None:
    """Commit a new version of a package in its work tree and push it with a tag."""
    work = server.root / "work" / name
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@localhost",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@localhost"}  # fmt: skip
    init = work / name / "__init__.py"
    init.write_text(init.read_text().replace('"1.0.0"', f'"{version}"'))
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"1.0.0"', f'"{version}"'))
    bare = str(server.repos / f"{name}.git")
    for argv in (
        ["git", "commit", "-qam", version],
        ["git", "tag", tag],
        ["git", "push", "-q", bare, "main", tag],
    ):
        subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True)


# ---------------------------------------------------------------------------
# Variants: how each one is set up and built.


@dataclass
class Variant:
    """One way of building the example."""

    name: str
    project: Path
    image: str
    build: Callable[[], None]
    #: The bare docker build the tool runs, for the no-op overhead figure.
    bare: Callable[[], None] | None = None


def _docker(engine: Engine, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [engine.docker, *args], env=engine.child_env(), text=True, **kwargs
    )


def _run_quietly(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"benchmark: {' '.join(argv[:3])} failed ({done.returncode}):\n"
            f"{(done.stdout + done.stderr)[-3000:]}"
        )


def _project(lab: Lab, name: str) -> Path:
    path = lab.root / "projects" / name
    shutil.copytree(HERE / "example" / "app", path / "app")
    (path / "requirements.txt").write_text(lab.requirements())
    (path / ".dockerignore").write_text("known_hosts\npip.conf\n.env\nDockerfile\n")
    return path


INV = str(Path(sys.executable).with_name("inv"))


def _tool_env(lab: Lab, engine: Engine, **extra: str) -> dict[str, str]:
    """The environment `inv` runs with: the user's agent and the lab's settings."""
    env = {
        **os.environ,
        **lab.agent.env(),
        "SECUREBUILD_BASE_IMAGE": BASE_IMAGE,
        "SECUREBUILD_NETWORK": "host",
        "SECUREBUILD_KEY_SOURCE": "agent",
        "SECUREBUILD_KNOWN_HOSTS": str(lab.root / "known_hosts"),
        "SECUREBUILD_PIP_CONFIG": str(lab.root / "pip.conf"),
        "SECUREBUILD_DOCKER": engine.docker,
        **extra,
    }
    env.pop("PYTHONPATH", None)
    return env


def make_variants(lab: Lab, engine: Engine) -> list[Variant]:
    """The three variants, each in its own copy of the example project."""
    env = {**engine.child_env(), "DOCKER_BUILDKIT": "1", **lab.agent.env()}
    known_hosts = lab.root / "known_hosts"

    old = _project(lab, "baseline-old")
    shutil.copy(HERE / "baselines" / "old.Dockerfile", old / "Dockerfile")
    old_image = "sbt-bench-old:latest"
    key_text = lab.key.private.read_text()

    def build_old() -> None:
        # The old recipe hands docker the key on its command line: that is the
        # point of replacing it (a throwaway key made for this run).
        _run_quietly(
            [engine.docker, "build", "--network", "host", "--tag", old_image,
             "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
             "--build-arg", f"SSH_PRIVATE_KEY={key_text}",
             "--build-arg", "GIT_HOST=127.0.0.1",
             "--build-arg", f"GIT_PORT={lab.server.port}",
             "--build-arg", f"PIP_INDEX_URL={lab.index.simple_url}", str(old)],
            env,
        )  # fmt: skip

    hand = _project(lab, "baseline-hand")
    shutil.copy(HERE / "baselines" / "hand.Dockerfile", hand / "Dockerfile")
    hand_image = "sbt-bench-hand:latest"

    def build_hand() -> None:
        _run_quietly(
            [engine.docker, "build", "--network", "host", "--tag", hand_image,
             "--ssh", f"default={lab.agent.socket}",
             "--secret", f"id=known_hosts,src={known_hosts}",
             "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
             "--build-arg", f"PIP_INDEX_URL={lab.index.simple_url}", str(hand)],
            env,
        )  # fmt: skip

    ours = _project(lab, "securebuild")
    (ours / "tasks.py").write_text(USER_TASKS)
    (lab.root / "pip.conf").write_text(lab.index.pip_config())
    ours_image = "sbt-bench-securebuild:latest"
    user_env = _tool_env(lab, engine, SECUREBUILD_IMAGE=ours_image.split(":")[0])

    def build_ours() -> None:
        _run_quietly([INV, "build-image"], user_env, cwd=ours)

    def bare_ours() -> None:
        # The very docker command `inv build-image` runs, started directly.
        settings = resolve({}, environ=user_env, cwd=ours)
        plan = plan_build(settings, ours)
        fingerprints = ",".join(i.fingerprint for i in list_identities(str(lab.agent.socket)))
        key = ForwardedKey(str(lab.agent.socket), fingerprints, "agent")
        secrets = {**plan.secret_files, "known_hosts": known_hosts}
        _run_quietly(build_command(engine, plan, key, secrets), env)

    return [
        Variant("baseline-old", old, old_image, build_old),
        Variant("baseline-hand", hand, hand_image, build_hand),
        Variant("securebuild", ours, ours_image, build_ours, bare_ours),
    ]


# ---------------------------------------------------------------------------
# Measurements.


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def image_size(engine: Engine, image: str) -> int:
    out = _docker(engine, "image", "inspect", "--format", "{{.Size}}", image,
                  capture_output=True, check=True).stdout  # fmt: skip
    return int(out.strip())


#: What must not remain in the layers a build adds, by path fragment.
LEFTOVER_PATTERNS = {
    "wheel files": lambda p: p.endswith(".whl"),
    "git": lambda p: p.endswith(("/bin/git", "/git-core/git")),
    "ssh client": lambda p: p.endswith(("/bin/ssh", "/bin/ssh-add")),
    "pip": lambda p: "/site-packages/pip/" in p or "/dist-packages/pip/" in p,
    "pip/uv caches": lambda p: "/.cache/pip/" in p or "/.cache/uv/" in p,
    "build tools": lambda p: (
        "/site-packages/setuptools/" in p or p.endswith(("/bin/gcc", "/bin/cc"))
    ),
    "vendor folder": lambda p: p.startswith("/vendor/python/"),
}


def leftovers(paths: Iterable[str]) -> list[str]:
    """Which kinds of build leftovers the added layers hold (absolute paths)."""
    listed = list(paths)
    return [name for name, test in LEFTOVER_PATTERNS.items() if any(map(test, listed))]


#: Where the bytes a build adds go, first match wins.
BYTE_KINDS = {
    "wheel files": lambda p: p.endswith(".whl"),
    "caches": lambda p: "/.cache/" in p,
    "bytecode": lambda p: p.endswith((".pyc", ".pyo")),
    "packages": lambda p: "/site-packages/" in p or "/dist-packages/" in p,
    "other": lambda p: True,
}


def bytes_by_kind(files: dict[str, int]) -> dict[str, int]:
    """The added bytes split by kind: installed packages, bytecode, wheels, caches, other."""
    kinds = dict.fromkeys(BYTE_KINDS, 0)
    for path, size in files.items():
        kind = next(k for k, test in BYTE_KINDS.items() if test(path))
        kinds[kind] += size
    return kinds


IMPORT_INVOKE = "python -c 'import invoke'"


def cli_start(runs: int, project: Path, env: dict[str, str]) -> dict[str, float]:
    """Median wall time of bare Python, `inv --list` and `securebuild --help`."""
    bindir = Path(sys.executable).parent
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        # The floor under any invoke program: invoke's own import.
        IMPORT_INVOKE: [sys.executable, "-c", "import invoke"],
        "inv --list": [str(bindir / "inv"), "--list"],
        "securebuild --help": [str(bindir / "securebuild"), "--help"],
    }
    # Interleaved rounds: the machine's drift then weighs on every command
    # alike, and the differences between medians mean something.
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(max(runs, 11)):
        for label, argv in commands.items():
            times[label].append(timed(lambda argv=argv: _run_quietly(argv, env, cwd=project)))  # type: ignore[misc]
    return {label: statistics.median(seconds) for label, seconds in times.items()}


@dataclass
class Figures:
    """Raw measurements: scenario -> variant -> list of seconds (or bytes)."""

    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    bytes_added: dict[str, int] = field(default_factory=dict)
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    bytes_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    bare_noop: list[float] = field(default_factory=list)
    cli: dict[str, float] = field(default_factory=dict)
    lock_seconds: float = 0.0

    def add(self, scenario: str, variant: str, seconds: float) -> None:
        self.times.setdefault(scenario, {}).setdefault(variant, []).append(seconds)

    def median(self, scenario: str, variant: str) -> float:
        return statistics.median(self.times[scenario][variant])


SCENARIOS = {
    "cold": "cold build, empty BuildKit cache",
    "noop": "no-op rebuild",
    "app": "rebuild after an app source change",
    "dep": "rebuild after adding one public dependency",
    "tag": "rebuild after bumping the private tag",
}


def measure(lab: Lab, engine: Engine, variants: list[Variant], runs: int) -> Figures:
    figures = Figures()
    for run in range(runs):
        for variant in variants:
            requirements = variant.project / "requirements.txt"
            requirements.write_text(lab.requirements())
            _docker(engine, "image", "rm", "-f", variant.image, capture_output=True)
            _docker(engine, "builder", "prune", "--all", "--force", capture_output=True,
                    check=True)  # fmt: skip
            figures.add("cold", variant.name, timed(variant.build))
            if run == 0:
                figures.bytes_added[variant.name] = image_size(engine, variant.image) - (
                    image_size(engine, BASE_IMAGE)
                )
                files = added_files(engine.docker, variant.image, BASE_IMAGE, engine.child_env())
                figures.leftovers[variant.name] = leftovers(files)
                figures.bytes_by_kind[variant.name] = bytes_by_kind(files)
            figures.add("noop", variant.name, timed(variant.build))
            if variant.bare is not None:
                figures.bare_noop.append(timed(variant.bare))
            source = variant.project / "app" / "__main__.py"
            source.write_text(source.read_text() + f"# change {run}\n")
            figures.add("app", variant.name, timed(variant.build))
            requirements.write_text(lab.requirements(added=True))
            figures.add("dep", variant.name, timed(variant.build))
            requirements.write_text(lab.requirements(added=True, tag="v1.1.0"))
            figures.add("tag", variant.name, timed(variant.build))
            print(f"benchmark: run {run + 1}/{runs} {variant.name} done", file=sys.stderr)
    return figures


# ---------------------------------------------------------------------------
# Report.


@dataclass
class Verdict:
    what: str
    value: float
    target: float
    unit: str = "x"

    @property
    def passed(self) -> bool:
        return self.value <= self.target

    def line(self) -> str:
        shown = f"{self.value:.2f}{self.unit}"
        limit = f"{self.target:.2f}{self.unit}"
        return f"{'PASS' if self.passed else 'FAIL'}  {self.what}: {shown} (target <= {limit})"


def verdicts(f: Figures) -> list[Verdict]:
    def ratio(scenario: str, baseline: str) -> float:
        return f.median(scenario, "securebuild") / f.median(scenario, baseline)

    ours_noop = f.median("noop", "securebuild")
    return [
        Verdict("cold build vs baseline-old", ratio("cold", "baseline-old"), 0.55),
        Verdict("dependency added vs baseline-old", ratio("dep", "baseline-old"), 0.25),
        Verdict("dependency added vs baseline-hand", ratio("dep", "baseline-hand"), 0.25),
        Verdict("private tag bump vs baseline-old", ratio("tag", "baseline-old"), 0.35),
        Verdict(
            "bytes added vs baseline-old",
            f.bytes_added["securebuild"] / f.bytes_added["baseline-old"],
            0.45,
        ),
        Verdict(
            "build leftovers in the final image (count)",
            float(len(f.leftovers["securebuild"])),
            0.0,
            unit="",
        ),
        Verdict(
            "no-op overhead over a bare docker build",
            ours_noop - statistics.median(f.bare_noop),
            0.35,
            unit="s",
        ),
        Verdict(
            "inv --list vs python -c pass",
            f.cli["inv --list"] / f.cli["python -c pass"],
            3.0,
        ),
        Verdict(
            "securebuild --help vs python -c pass",
            f.cli["securebuild --help"] / f.cli["python -c pass"],
            3.0,
        ),
    ]


def bytes_floor(f: Figures) -> int:
    """The fewest installed-package bytes any variant wrote: what any installer must add."""
    return min(kinds["packages"] for kinds in f.bytes_by_kind.values())


def report(f: Figures, engine_version: str, runs: int, quick: bool) -> str:
    lines = [
        f"securebuild-tasks benchmark, {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} {os.cpu_count()} CPUs, engine {engine_version}, "
        f"median of {runs} run(s){' (quick: small package set)' if quick else ''}",
        "",
        f"{'scenario':<44}{'old':>9}{'hand':>9}{'ours':>9}{'ours/old':>10}{'ours/hand':>11}",
    ]
    for key, label in SCENARIOS.items():
        old, hand, ours = (f.median(key, v) for v in VARIANTS)
        lines.append(
            f"{label:<44}{old:>8.1f}s{hand:>8.1f}s{ours:>8.1f}s"
            f"{ours / old:>9.2f}x{ours / hand:>10.2f}x"
        )
    mb = {v: f.bytes_added[v] / 1e6 for v in VARIANTS}
    lines.append(
        f"{'bytes added on top of the base image':<44}{mb['baseline-old']:>7.1f}MB"
        f"{mb['baseline-hand']:>7.1f}MB{mb['securebuild']:>7.1f}MB"
        f"{mb['securebuild'] / mb['baseline-old']:>9.2f}x"
        f"{mb['securebuild'] / mb['baseline-hand']:>10.2f}x"
    )
    lines.extend(["", f"{'bytes added, by kind':<44}{'old':>9}{'hand':>9}{'ours':>9}"])
    for kind in BYTE_KINDS:
        sizes = "".join(f"{f.bytes_by_kind[v][kind] / 1e6:>7.1f}MB" for v in VARIANTS)
        lines.append(f"  {kind:<42}{sizes}")
    floor = bytes_floor(f)
    lines.append(
        f"floor: the installed packages alone, the least any variant wrote, {floor / 1e6:.1f} MB"
        f" = {floor / f.bytes_added['baseline-old']:.2f}x baseline-old"
    )
    lines.append("")
    for variant in VARIANTS:
        found = ", ".join(f.leftovers[variant]) or "none"
        lines.append(f"left in the final image by {variant}: {found}")
    lines.append(
        f"no-op: ours {f.median('noop', 'securebuild'):.2f}s, the same docker build run bare "
        f"{statistics.median(f.bare_noop):.2f}s"
    )
    cli = ", ".join(f"{label} {seconds * 1000:.0f} ms" for label, seconds in f.cli.items())
    lines.append(f"CLI start: {cli}")
    ours_share = f.cli["inv --list"] - f.cli[IMPORT_INVOKE]
    lines.append(
        f"  of which this project's own import and collection: {ours_share * 1000:.0f} ms"
        " (the rest is Python and invoke itself)"
        if ours_share > 0
        else "  of which this project's own import and collection: lost in the noise"
    )
    lines.append(
        "floor: python -c 'import invoke' alone is "
        f"{f.cli[IMPORT_INVOKE] / f.cli['python -c pass']:.1f}x python -c pass"
    )
    lines.append(f"inv lock of the example: {f.lock_seconds:.1f}s (warm cache)")
    lines.append("")
    lines.extend(v.line() for v in verdicts(f))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (median)")
    parser.add_argument("--quick", action="store_true", help="one run, three public packages")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    # A regular install (pip, uv) compiles the package's bytecode; an editable
    # one under PYTHONDONTWRITEBYTECODE=1 would compile every module at each
    # start and make the tool's own overhead look larger than users see it.
    compileall.compile_dir(Path(securebuild_tasks.__file__).parent, quiet=1)
    try:
        engine = detect_engine()
        ping(engine)
    except SecurebuildError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
    if _docker(engine, "image", "inspect", BASE_IMAGE, capture_output=True).returncode != 0:
        print(f"benchmark: base image {BASE_IMAGE} is missing; run .ci/services.sh",
              file=sys.stderr)  # fmt: skip
        return 2
    version = _docker(engine, "version", "--format", "{{.Server.Version}}",
                      capture_output=True).stdout.strip()  # fmt: skip
    with lab(args.quick) as bench_lab:
        variants = make_variants(bench_lab, engine)
        figures = measure(bench_lab, engine, variants, runs)
        ours = variants[-1]
        env = {**os.environ, **bench_lab.agent.env()}
        figures.cli = cli_start(runs, ours.project, env)
        figures.lock_seconds = measure_lock(bench_lab, engine, ours)
        for variant in variants:
            _docker(engine, "image", "rm", "-f", variant.image, capture_output=True)
    text = report(figures, version, runs, args.quick)
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "times": figures.times,
                    "bytes_added": figures.bytes_added,
                    "leftovers": figures.leftovers,
                    "bytes_by_kind": figures.bytes_by_kind,
                    "bare_noop": figures.bare_noop,
                    "cli": figures.cli,
                    "lock_seconds": figures.lock_seconds,
                    "verdicts": [
                        {"what": v.what, "value": v.value, "target": v.target, "passed": v.passed}
                        for v in verdicts(figures)
                    ],
                },
                indent=2,
            )
        )
    return 0


def measure_lock(lab: Lab, engine: Engine, ours: Variant) -> float:
    """Time `inv lock` of the example (requirements.in), then drop the lock."""
    (ours.project / "requirements.in").write_text(lab.requirements())
    env = _tool_env(lab, engine)
    seconds = timed(lambda: _run_quietly([INV, "lock"], env, cwd=ours.project))
    (ours.project / "requirements.lock").unlink()
    (ours.project / "requirements.in").unlink()
    return seconds


if __name__ == "__main__":
    sys.exit(main())
