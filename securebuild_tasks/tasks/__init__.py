"""The task collection: one namespace users add to their own ``tasks.py``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from invoke.collection import Collection
from invoke.tasks import Task

from ..errors import SettingsError
from ..settings import NAMESPACE, collection_defaults
from . import audit, deps, doctor, image, init, keys, settings
from . import clean as clean_tasks
from ._common import install_config_error_hook


def make_collection(name: str | None = None) -> Collection:
    """Build a fresh collection (tests and the CLI each get their own)."""
    ns = Collection(name) if name else Collection()
    tasks = (
        image.build_image,
        deps.lock,
        deps.vendor,
        clean_tasks.clean,
        doctor.doctor,
        audit.audit,
        init.init,
        keys.store_key,
        keys.forget_key,
        keys.store_token,
        keys.forget_token,
        settings.show_settings,
    )
    for obj in tasks:
        # invoke's @task(help=...) is typed as returning a plain callable.
        ns.add_task(cast(Task[Any], obj))
    ns.configure({NAMESPACE: collection_defaults()})
    return ns


def add_to(collection: Collection, *, skip: Iterable[str] = ()) -> Collection:
    """Add every task at the top of an existing collection, with its defaults.

    For a ``tasks.py`` that already has an ``ns``: ``securebuild_tasks.add_to(ns)``
    gives ``inv build-image`` next to the project's own tasks. A task or
    collection of the project's with the same name is never replaced: that is
    an error naming it, and ``skip=["clean"]`` leaves that one of ours out.
    """
    source = make_collection()
    skipped = {collection.transform(name) for name in skip}
    unknown = skipped - {collection.transform(t.name) for t in source.tasks.values()}
    if unknown:
        raise SettingsError(
            f"add_to(skip=...) names {', '.join(sorted(unknown))}, which is no securebuild task",
            hint="skip only names of `inv --list` that come from securebuild_tasks",
        )
    adding = {collection.transform(t.name): t for t in source.tasks.values()}
    adding = {name: t for name, t in adding.items() if name not in skipped}
    clashes = [
        f"{'a task' if name in collection.tasks else 'a collection'} named {name}"
        for name in adding
        if name in collection.tasks or name in collection.collections
    ]
    if clashes:
        names = ", ".join(f'"{c.rsplit(" ", 1)[1]}"' for c in clashes)
        raise SettingsError(
            f"your tasks already have {' and '.join(clashes)}, and"
            " securebuild_tasks.add_to(ns) will not replace them",
            hint=f"keep yours with add_to(ns, skip=[{names}]), or add these tasks under"
            " their own name: ns.add_collection(securebuild_tasks.ns)",
        )
    for name, task_obj in adding.items():
        collection.add_task(task_obj, name=name)
    # Fill in only what the project has not configured itself.
    existing = collection.configuration().get(NAMESPACE) or {}
    collection.configure({NAMESPACE: {**collection_defaults(), **existing}})
    return collection


# `inv` loads invoke.yaml after importing the user's tasks.py (which imports
# this): a broken file is then reported as one line, not a traceback.
install_config_error_hook()

#: The collection, named ``securebuild``: ``Collection(securebuild_tasks.ns)``
#: gives ``inv securebuild.build-image``; `add_to` puts the tasks at the top.
ns = make_collection(NAMESPACE)

__all__ = ["add_to", "make_collection", "ns"]
