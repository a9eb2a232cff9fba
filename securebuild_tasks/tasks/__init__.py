"""The task collection: one namespace users add to their own ``tasks.py``."""

from __future__ import annotations

from typing import Any, cast

from invoke.collection import Collection
from invoke.tasks import Task

from ..settings import NAMESPACE, defaults
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
    ns.configure({NAMESPACE: defaults()})
    return ns


def add_to(collection: Collection) -> Collection:
    """Add every task at the top of an existing collection, with its defaults.

    For a ``tasks.py`` that already has an ``ns``: ``securebuild_tasks.add_to(ns)``
    gives ``inv build-image`` next to the project's own tasks.
    """
    source = make_collection()
    for task_obj in source.tasks.values():
        collection.add_task(task_obj)
    # Fill in only what the project has not configured itself.
    existing = collection.configuration().get(NAMESPACE) or {}
    collection.configure({NAMESPACE: {**defaults(), **existing}})
    return collection


# `inv` loads invoke.yaml after importing the user's tasks.py (which imports
# this): a broken file is then reported as one line, not a traceback.
install_config_error_hook()

#: The collection, named ``securebuild``: ``Collection(securebuild_tasks.ns)``
#: gives ``inv securebuild.build-image``; `add_to` puts the tasks at the top.
ns = make_collection(NAMESPACE)

__all__ = ["add_to", "make_collection", "ns"]
