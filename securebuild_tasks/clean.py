"""Removing what this tool made, and nothing else.

- the wheelhouse (only when it has the manifest `inv vendor` writes) and the
  staging folders an interrupted `vendor` or `lock` left beside it;
- this project's dangling images (found by the label every build sets);
- BuildKit cache records of the template's private steps (marked
  ``securebuild-private-step``): their results and cache mounts hold wheels
  and git checkouts of private code, for every project built on this engine;
- the template's cache mounts under ``/tmp/securebuild``, whichever step made
  them (the runtime stage's install step is not marked, as its result is the
  image's own layer, but its caches and temporary files may be private);
- ephemeral work directories of runs that were killed.

Files and images without those marks are never touched.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import lockfile
from .agent import reap_stale_workdirs
from .build import PROJECT_LABEL, project_id, resolve_context
from .engine import docker_client, sdk_client
from .errors import EngineError, SecurebuildError
from .settings import Settings

PRIVATE_STEP_MARK = "securebuild-private-step"
# BuildKit names a cache mount's record "cached mount <target> from exec <command>"
# after the step that first made it.
PRIVATE_CACHE_MOUNT = "cached mount /tmp/securebuild/"


@dataclass(frozen=True)
class Item:
    """One thing to remove."""

    kind: str
    name: str
    size: int
    remove: Callable[[], None]

    def describe(self) -> str:
        """One line for the user."""
        size = f" ({self.size / 1e6:.1f} MB)" if self.size else ""
        return f"{self.kind} {self.name}{size}"


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def local_items(settings: Settings, cwd: Path) -> list[Item]:
    """Wheelhouse and staging leftovers of this project."""
    context = resolve_context(settings, cwd)
    items: list[Item] = []
    if settings.wheelhouse:
        wheelhouse = context / settings.wheelhouse
        # Only a folder `inv vendor` made (its manifest's mark; never a link,
        # never the context or a folder holding it).
        holds_context = wheelhouse.resolve() in (context.resolve(), *context.resolve().parents)
        if lockfile.is_wheelhouse(wheelhouse) and not holds_context:
            items.append(
                Item(
                    "wheelhouse",
                    str(wheelhouse),
                    _tree_size(wheelhouse),
                    lambda: shutil.rmtree(wheelhouse),
                )
            )
        # Staging folders (named by vendor alone), and the previous wheelhouse
        # when it is one (the name alone could be a folder of the user's).
        old = lockfile.previous_wheelhouse(wheelhouse)
        leftovers = [
            *wheelhouse.parent.glob(".securebuild-vendor-*"),
            *([old] if lockfile.is_wheelhouse(old) else []),
        ]
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                items.append(Item("staging folder", str(path), _tree_size(path), _rmtree(path)))
    partial = lockfile.partial_path(context / settings.lock_file)
    if partial.is_file():
        items.append(Item("partial lock", str(partial), partial.stat().st_size, partial.unlink))
    for path in reap_stale_workdirs(dry_run=True):
        items.append(Item("stale work dir", str(path), 0, _reap(path)))
    return items


def _rmtree(path: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(path, ignore_errors=True)


def _reap(path: Path) -> Callable[[], None]:
    def reap() -> None:
        reap_stale_workdirs(only=path)

    return reap


class InUse(Exception):
    """The engine keeps an image a container uses (the API's 409)."""


def engine_items(settings: Settings, cwd: Path) -> list[Item]:
    """This project's dangling images and the private steps' cache records.

    Asked through the docker SDK; where the SDK cannot reach the daemon the
    docker CLI can (a TLS context, ``ssh://`` without paramiko), through the CLI.
    """
    import docker.errors

    context = resolve_context(settings, cwd)
    docker_cli = docker_client(settings.docker)
    label = f"{PROJECT_LABEL}={project_id(context)}"
    try:
        # Any docker client: it only tells the SDK where the daemon is.
        client: Any = sdk_client(docker_cli)
        client.ping()
        images = [
            (image.id, int(image.attrs.get("Size", 0)))
            for image in client.images.list(filters={"dangling": True, "label": label})
        ]
        records = client.df().get("BuildCache") or []
    except (docker.errors.DockerException, EngineError) as exc:
        sdk_error = exc.__class__.__name__
        try:
            return _items(*_from_cli(docker_cli, label))
        except EngineError:
            pass
        raise EngineError(
            f"cannot reach the Docker daemon to clean images and cache ({sdk_error})",
            hint="start Docker, or run `inv clean --local-only` to clean only files",
        ) from None

    def remove(image_id: str) -> None:
        # Not forced: an image a container uses, running or stopped, is kept
        # (the engine answers 409, and `clean` reports it and goes on).
        try:
            client.images.remove(image_id)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise InUse from None
            raise

    def prune(record_id: str) -> None:
        # Without `all`, Docker 23 and later prune only what they count as
        # dangling, which a private step's record is not; the id filter
        # already limits the prune to that one record.
        client.api.prune_builds(filters={"id": [record_id]}, all=True)

    return _items(images, records, remove, prune)


def _items(
    images: list[tuple[str, int]],
    records: list[dict[str, Any]],
    remove: Callable[[str], None],
    prune: Callable[[str], None],
) -> list[Item]:
    items = [
        Item("dangling image", image_id, size, functools.partial(remove, image_id))
        for image_id, size in images
    ]
    marked = {str(r["ID"]) for r in records if _is_private(r)}
    # What was built on top of a private step holds its files too.
    private_ids = _with_descendants(marked, records)
    private = [r for r in records if str(r["ID"]) in private_ids and not r.get("InUse")]
    if private:
        ordered = _leaves_first(private)

        def prune_all() -> None:
            # The engine takes one id per filter, and keeps a record with
            # children until they are gone: leaves go first.
            for record_id in ordered:
                prune(record_id)

        items.append(
            Item(
                "BuildKit cache records of private steps:",
                str(len(ordered)),
                sum(int(r.get("Size", 0)) for r in private),
                prune_all,
            )
        )
    return items


def _cli(docker_cli: str, *args: str) -> str:
    """Run a docker CLI command; its output, or `EngineError` with its last line."""
    try:
        done = subprocess.run(
            [docker_cli, *args],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"docker {args[0]} failed ({exc.__class__.__name__})") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise EngineError(f"docker {' '.join(args[:2])} failed: {said[:200]}")
    return done.stdout


_SIZE = re.compile(r"([\d.]+)\s*([kKMGT]?)i?B")
_UNITS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _size(text: str) -> int:
    """The CLI's human size ("1.2MB") in bytes, for the listing only."""
    found = _SIZE.search(text or "")
    return int(float(found.group(1)) * _UNITS[found.group(2)]) if found else 0


def _from_cli(
    docker_cli: str, label: str
) -> tuple[
    list[tuple[str, int]], list[dict[str, Any]], Callable[[str], None], Callable[[str], None]
]:
    """What `engine_items` asks the SDK, asked the docker CLI (which reaches every
    endpoint its contexts can), in the SDK's shapes."""
    listed = _cli(
        docker_cli,
        "image",
        "ls",
        "--no-trunc",
        "--filter",
        "dangling=true",
        "--filter",
        f"label={label}",
        "--format",
        "{{.ID}}\t{{.Size}}",
    )
    images = [
        (image_id, _size(size))
        for image_id, _, size in (line.partition("\t") for line in listed.splitlines() if line)
    ]
    cache = _cli(docker_cli, "system", "df", "-v", "--format", "{{json .BuildCache}}")
    try:
        rows = json.loads(cache.strip() or "[]") or []
    except ValueError:
        raise EngineError("docker system df printed no JSON") from None
    records = [
        {
            "ID": row.get("ID", ""),
            "Description": row.get("Description", ""),
            "Type": row.get("CacheType", ""),
            "Parents": [p.strip() for p in str(row.get("Parent") or "").split(",") if p.strip()],
            "InUse": str(row.get("InUse", "")).lower() == "true",
            "Size": _size(str(row.get("Size", ""))),
        }
        for row in rows
        if isinstance(row, dict)
    ]

    def remove(image_id: str) -> None:
        try:
            _cli(docker_cli, "image", "rm", image_id)
        except EngineError as exc:
            if "conflict" in exc.message or "is being used" in exc.message:
                raise InUse from None
            raise

    def prune(record_id: str) -> None:
        _cli(docker_cli, "builder", "prune", "--force", "--all", "--filter", f"id={record_id}")

    return images, records, remove, prune


def _is_private(record: dict[str, Any]) -> bool:
    description = str(record.get("Description", ""))
    if PRIVATE_STEP_MARK in description:
        return True
    return record.get("Type") == "exec.cachemount" and description.startswith(PRIVATE_CACHE_MOUNT)


def _parents(record: dict[str, Any]) -> list[str]:
    """A record's parents. API 1.42 and later list them (Docker 23 to 28 under the
    key " Parents", a typo in the engine's JSON tag) and leave "Parent" empty."""
    listed = record.get("Parents") or record.get(" Parents")
    if listed:
        return [str(parent) for parent in listed]
    parent = record.get("Parent")
    return [str(parent)] if parent else []


def _with_descendants(ids: set[str], records: list[dict[str, Any]]) -> set[str]:
    found = set(ids)
    grew = True
    while grew:
        children = {str(r["ID"]) for r in records if found.intersection(_parents(r))}
        grew = not children <= found
        found |= children
    return found


def _leaves_first(records: list[dict[str, Any]]) -> list[str]:
    """Record ids, each after every record built on it (the engine keeps a record
    that still has children)."""
    ids = {str(r["ID"]) for r in records}
    parents = {str(r["ID"]): [p for p in _parents(r) if p in ids] for r in records}
    depths: dict[str, int] = {}

    def depth(record_id: str) -> int:
        if record_id not in depths:
            depths[record_id] = 0  # a cycle, which BuildKit never makes, ends here
            depths[record_id] = 1 + max((depth(p) for p in parents[record_id]), default=-1)
        return depths[record_id]

    return sorted(ids, key=depth, reverse=True)


def clean(
    settings: Settings,
    cwd: Path,
    *,
    dry_run: bool,
    local_only: bool,
    kept: list[str] | None = None,
) -> list[Item]:
    """Find what to remove and (unless ``dry_run``) remove it; return what was removed.

    The engine is asked first: with no daemon, nothing is removed at all. An
    image a container still uses is kept, said in ``kept``, and the rest goes on.
    """
    import docker.errors

    from .index import adopt_env_token

    adopt_env_token()  # the docker queries below inherit this process's environment
    items = [] if local_only else engine_items(settings, cwd)
    items = local_items(settings, cwd) + items
    if not local_only and settings.buildx_builder and kept is not None:
        # A named builder (docker-container, remote) keeps its cache itself,
        # where the engine's API does not reach.
        name = settings.buildx_builder
        kept.append(
            f"the build cache of buildx builder {name}, which the engine does not list:"
            f" `docker buildx prune --builder {name} --all` removes it, private steps included"
        )
    if dry_run:
        return items
    removed = []
    for item in items:
        try:
            item.remove()
        except InUse:
            # A container, running or stopped, uses the image: kept, and on.
            if kept is not None:
                kept.append(f"{item.describe()}: a container uses it; remove that first")
            continue
        except (docker.errors.DockerException, EngineError) as exc:
            raise EngineError(
                f"the daemon refused to remove {item.describe()} ({exc.__class__.__name__})",
                hint="see `docker system df -v`; run `inv clean` again once the build using"
                " it has finished",
            ) from None
        except OSError as exc:
            raise SecurebuildError(
                f"cannot remove {item.describe()}: {exc.strerror or exc.__class__.__name__}",
                hint="check its permissions, then run `inv clean` again",
            ) from None
        removed.append(item)
    return removed
