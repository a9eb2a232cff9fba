"""Composing the collection into a user's tasks.py."""

from __future__ import annotations

from invoke.collection import Collection

import securebuild_tasks
from securebuild_tasks.settings import defaults


def test_add_to_keeps_the_projects_own_settings() -> None:
    """add_to fills in defaults without overwriting what the project configured."""
    ns = Collection()
    ns.configure({"securebuild": {"image": "myapp", "network": "host"}})
    securebuild_tasks.add_to(ns)
    config = ns.configuration()["securebuild"]
    assert config["image"] == "myapp"
    assert config["network"] == "host"
    assert config["tag"] == defaults()["tag"]
    assert {"build-image", "lock", "vendor", "clean", "store-key"} <= set(ns.task_names)


def test_named_collection_nests_under_its_name() -> None:
    """Collection(securebuild_tasks.ns) gives securebuild.build-image."""
    root = Collection(securebuild_tasks.ns)
    assert "securebuild.build-image" in root.task_names
