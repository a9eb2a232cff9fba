"""securebuild-tasks: Invoke tasks that build Docker images with private Python
dependencies, forwarding an SSH key to BuildKit instead of baking it in.

At the end of your ``tasks.py``::

    import sys
    from invoke import Collection
    import securebuild_tasks

    ns = Collection.from_module(sys.modules[__name__])  # or the ns you have
    securebuild_tasks.add_to(ns)     # inv build-image, inv store-key, ...

Importing the package loads nothing but its errors: the tasks (and invoke)
are imported on first use of ``add_to``, ``make_collection`` or ``ns``, and
no task reads a ``.env`` file, starts a docker client or looks in the keyring
before it runs. So ``securebuild --help`` starts at nearly bare Python speed.
"""

from __future__ import annotations

import importlib

from .errors import (
    AgentError,
    BuildError,
    CommandError,
    EngineError,
    HostKeyError,
    KeySourceError,
    RequirementsError,
    SecurebuildError,
    SettingsError,
)

# Not `typing.TYPE_CHECKING`: importing typing would double this package's
# import time; type checkers treat any name TYPE_CHECKING alike.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .settings import Settings, resolve
    from .tasks import add_to, make_collection, ns

__version__ = "0.1.0"

#: Public names and the submodule each is imported from on first use (PEP 562).
_LAZY = {
    "Settings": ".settings",
    "resolve": ".settings",
    "add_to": ".tasks",
    "make_collection": ".tasks",
    "ns": ".tasks",
}


#: Submodules reachable as attributes (``securebuild_tasks.build.build_image``).
_SUBMODULES = frozenset(
    {"audit", "build", "clean", "doctor", "engine", "index", "keys", "lockfile", "settings"}
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


__all__ = [
    "AgentError",
    "BuildError",
    "CommandError",
    "EngineError",
    "HostKeyError",
    "KeySourceError",
    "RequirementsError",
    "SecurebuildError",
    "Settings",
    "SettingsError",
    "__version__",
    "add_to",
    "make_collection",
    "ns",
    "resolve",
]
