"""clean: which BuildKit cache records are private, and the order they are pruned in."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from securebuild_tasks.clean import (
    _is_private,
    _leaves_first,
    _with_descendants,
    clean,
    local_items,
)
from securebuild_tasks.errors import SecurebuildError
from securebuild_tasks.settings import resolve


def _record(record_id: str, parents: list[str], api: str, description: str = "") -> dict[str, Any]:
    """A record as the engine's /system/df lists it, by API version."""
    record: dict[str, Any] = {"ID": record_id, "Type": "regular", "Description": description}
    if api == "1.41":  # Docker 20.10: one parent
        record["Parent"] = parents[0] if parents else ""
    elif api == "1.42-typo":  # Docker 23 to 28: a list, under a key with a leading space
        if parents:
            record[" Parents"] = parents
    else:  # the key as the API documents it
        if parents:
            record["Parents"] = parents
    return record


@pytest.mark.parametrize("api", ["1.41", "1.42-typo", "1.42"])
def test_descendants_and_order_on_every_api(api: str) -> None:
    """A private step's records and those built on it are found, children before parents."""
    records = [
        _record("base", [], api),
        _record("private", ["base"], api, "RUN : securebuild-private-step; set -eu"),
        _record("copy", ["private"], api, "COPY app"),
        _record("app", ["copy"], api, "COPY . /app"),
        _record("public", ["base"], api, "RUN apt-get install"),
    ]
    marked = {str(r["ID"]) for r in records if _is_private(r)}
    assert marked == {"private"}
    found = _with_descendants(marked, records)
    assert found == {"private", "copy", "app"}
    assert _leaves_first([r for r in records if r["ID"] in found]) == ["app", "copy", "private"]


def test_cache_mounts_under_the_template_folder_are_private() -> None:
    """A cache mount under /tmp/securebuild is private whichever step made it; others are not."""
    made_by = "from exec /bin/sh -c set -eu; export HOME=/tmp/securebuild/home"
    work = {"ID": "w", "Type": "exec.cachemount"}
    work["Description"] = f"cached mount /tmp/securebuild/work {made_by}"
    apt = {"ID": "a", "Type": "exec.cachemount"}
    apt["Description"] = f"cached mount /var/cache/apt {made_by}"
    layer = {"ID": "l", "Type": "regular"}
    layer["Description"] = f"cached mount /tmp/securebuild/work {made_by}"
    assert [_is_private(r) for r in (work, apt, layer)] == [True, False, False]


def test_partial_lock_is_found_beside_a_lock_in_a_folder(tmp_path: Path) -> None:
    """A lock_file in a folder leaves its partial file in that folder, and clean finds it."""
    settings = resolve({}, environ={"SECUREBUILD_LOCK_FILE": "locks/prod.lock"}, cwd=tmp_path)
    partial = tmp_path / "locks" / ".prod.lock.tmp"
    partial.parent.mkdir()
    partial.write_text("half a lock")
    found = [item for item in local_items(settings, tmp_path) if item.kind == "partial lock"]
    assert [item.name for item in found] == [str(partial)]
    found[0].remove()
    assert not partial.exists()


def _vendored(folder: Path) -> Path:
    """A wheelhouse as `inv vendor` leaves it."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"generator": "securebuild-tasks", "wheels": []}\n')
    (folder / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"PK")
    return folder


@pytest.mark.parametrize("manifest", ['{"name": "my web app"}', "[]", "not json"])
def test_a_folder_with_a_manifest_of_its_own_is_not_a_wheelhouse(
    tmp_path: Path, manifest: str
) -> None:
    """A manifest.json that `inv vendor` did not write (a web app's, say) makes no
    wheelhouse: clean leaves the folder as it is."""
    project = tmp_path / "project"
    public = project / "public"
    public.mkdir(parents=True)
    (public / "manifest.json").write_text(manifest)
    (public / "app.js").write_text("console.log(1)\n")
    settings = resolve({}, environ={"SECUREBUILD_WHEELHOUSE": "public"}, cwd=project)
    assert clean(settings, project, dry_run=False, local_only=True) == []
    assert (public / "app.js").is_file()
    (public / "manifest.json").write_text('{"generator": "securebuild-tasks", "wheels": []}')
    assert [i.kind for i in clean(settings, project, dry_run=False, local_only=True)] == [
        "wheelhouse"
    ]
    assert not public.exists()


def test_a_folder_named_like_the_previous_wheelhouse_is_left_alone(tmp_path: Path) -> None:
    """`.NAME.old` beside the wheelhouse is where vendor keeps the previous one
    while it swaps; a folder of the user's by that name is neither listed by clean
    nor removed by vendor (which refuses to start), and vendor's own is."""
    from securebuild_tasks.build import vendor
    from securebuild_tasks.errors import SettingsError

    project = tmp_path / "project"
    (project / "build").mkdir(parents=True)
    (project / "requirements.txt").write_text("six==1.16.0\n")
    mine = project / ".build.old"
    (mine / "important").mkdir(parents=True)
    settings = resolve({}, environ={"SECUREBUILD_WHEELHOUSE": "build"}, cwd=project)
    assert clean(settings, project, dry_run=False, local_only=True) == []
    with pytest.raises(SettingsError, match=r"\.build\.old exists and was not made by"):
        vendor(settings, cwd=project)
    assert (mine / "important").is_dir()
    (mine / "important").rmdir()
    mine.rmdir()
    _vendored(mine)
    assert [i.kind for i in clean(settings, project, dry_run=False, local_only=True)] == [
        "staging folder"
    ]
    assert not mine.exists()


def test_linked_wheelhouse_is_left_alone(tmp_path: Path) -> None:
    """A wheelhouse that is a link to a folder elsewhere is neither listed nor emptied."""
    elsewhere = _vendored(tmp_path / "shared" / "wheels")
    project = tmp_path / "project"
    (project / "vendor").mkdir(parents=True)
    (project / "vendor" / "python").symlink_to(elsewhere)
    settings = resolve({}, environ={}, cwd=project)
    removed = clean(settings, project, dry_run=False, local_only=True)
    assert [item.kind for item in removed] == []
    assert (elsewhere / "manifest.json").is_file()


def test_a_file_that_cannot_be_removed_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OS refusal while removing ends in one line naming what, not a traceback."""
    _vendored(tmp_path / "vendor" / "python")

    def refuse(path: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    settings = resolve({}, environ={}, cwd=tmp_path)
    with monkeypatch.context() as patched:
        patched.setattr(shutil, "rmtree", refuse)  # root may remove anything: the OS says no here
        with pytest.raises(SecurebuildError) as raised:
            clean(settings, tmp_path, dry_run=False, local_only=True)
    assert raised.value.line() == (
        f"cannot remove wheelhouse {tmp_path / 'vendor' / 'python'} (0.0 MB): Permission denied:"
        " check its permissions, then run `inv clean` again"
    )
