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

import shutil
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
        leftovers = [
            *wheelhouse.parent.glob(".securebuild-vendor-*"),
            wheelhouse.with_name(f".{wheelhouse.name}.old"),
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


def engine_items(settings: Settings, cwd: Path) -> list[Item]:
    """This project's dangling images and the private steps' cache records."""
    import docker
    import docker.errors

    context = resolve_context(settings, cwd)
    try:
        # Any docker client: it only tells the SDK where the daemon is.
        client: Any = sdk_client(docker_client(settings.docker))
        client.ping()
        images = client.images.list(
            filters={"dangling": True, "label": f"{PROJECT_LABEL}={project_id(context)}"}
        )
        records = client.df().get("BuildCache") or []
    except docker.errors.DockerException as exc:
        raise EngineError(
            f"cannot reach the Docker daemon to clean images and cache ({exc.__class__.__name__})",
            hint="start Docker, or run `inv clean --local-only` to clean only files",
        ) from None

    def remover(image_id: str) -> Callable[[], None]:
        # Not forced: an image a container uses, running or stopped, is kept
        # (the engine answers 409, and `clean` reports it and goes on).
        return lambda: client.images.remove(image_id)

    items = [
        Item("dangling image", image.id, int(image.attrs.get("Size", 0)), remover(image.id))
        for image in images
    ]
    marked = {str(r["ID"]) for r in records if _is_private(r)}
    # What was built on top of a private step holds its files too.
    private_ids = _with_descendants(marked, records)
    private = [r for r in records if str(r["ID"]) in private_ids and not r.get("InUse")]
    if private:
        ordered = _leaves_first(private)

        def prune() -> None:
            # The API takes one id per filter, and a record with children is
            # kept until they are gone: leaves go first. Without `all`, Docker
            # 23 and later prune only what they count as dangling, which a
            # private step's record is not; the id filter already limits the
            # prune to that one record.
            for record_id in ordered:
                client.api.prune_builds(filters={"id": [record_id]}, all=True)

        items.append(
            Item(
                "BuildKit cache records of private steps:",
                str(len(ordered)),
                sum(int(r.get("Size", 0)) for r in private),
                prune,
            )
        )
    return items


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
        except docker.errors.DockerException as exc:
            if isinstance(exc, docker.errors.APIError) and exc.status_code == 409:
                # A container, running or stopped, uses the image: kept, and on.
                if kept is not None:
                    kept.append(f"{item.describe()}: a container uses it; remove that first")
                continue
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
