"""Composing the collection into a user's tasks.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from invoke.collection import Collection

import securebuild_tasks
from securebuild_tasks.errors import SettingsError
from securebuild_tasks.settings import defaults
from tests.support.cli import run_cli, user_env


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


def test_add_to_never_replaces_the_projects_own_tasks(tmp_path: Path) -> None:
    """A task or collection of the project's with one of our names is an error naming
    it (one line under inv, no traceback), and the project's stays; skip= leaves
    ours out, and a skip of a name we do not have is an error too."""
    own = (
        "from invoke import Collection, task\nimport securebuild_tasks\n\n"
        "@task\ndef clean(c):\n    print('my own clean')\n\n"
        "ns = Collection(clean)\nns.add_collection(Collection('lock'))\n"
    )
    (tmp_path / "tasks.py").write_text(own + "securebuild_tasks.add_to(ns)\n")
    done = run_cli("invoke", tmp_path, "--list", env=user_env())
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "securebuild: error: your tasks already have a collection named lock and a task"
        " named clean, and securebuild_tasks.add_to(ns) will not replace them: keep yours"
        ' with add_to(ns, skip=["lock", "clean"]), or add these tasks under their own name:'
        " ns.add_collection(securebuild_tasks.ns)"
    ]

    (tmp_path / "tasks.py").write_text(own + "securebuild_tasks.add_to(ns, skip=['clean'])\n")
    assert "collection named lock," in run_cli("invoke", tmp_path, "--list", env=user_env()).stderr

    (tmp_path / "tasks.py").write_text(
        own + "securebuild_tasks.add_to(ns, skip=['clean', 'lock'])\n"
    )
    listed = run_cli("invoke", tmp_path, "--list", env=user_env())
    assert listed.returncode == 0, listed.stderr
    assert "build-image" in listed.stdout
    mine = run_cli("invoke", tmp_path, "clean", env=user_env())
    assert mine.stdout.strip() == "my own clean"

    ns = Collection()
    with pytest.raises(SettingsError, match="names nosuch, which is no securebuild task"):
        securebuild_tasks.add_to(ns, skip=["nosuch"])


def test_the_prefix_a_task_was_called_with_names_a_real_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`inv securebuild.lock` gives "securebuild."; an option's value that happens
    to end in ".lock" (`--lock-file requirements.lock`) names no task, so no prefix."""
    import types

    from securebuild_tasks.tasks._common import _invoked_prefix

    module = types.ModuleType("ci")  # `inv -c ci` loads ci.py
    module.ns = Collection(securebuild_tasks.ns)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ci", module)
    monkeypatch.setattr(sys, "argv", ["inv", "securebuild.lock", "--lock-file", "x.lock"])
    assert _invoked_prefix("lock") == "securebuild."
    flat = Collection()
    securebuild_tasks.add_to(flat)
    module.ns = flat  # type: ignore[attr-defined]
    monkeypatch.setattr(sys, "argv", ["inv", "lock", "--lock-file", "requirements.lock"])
    assert _invoked_prefix("lock") == ""
