"""securebuild-tasks: Invoke tasks that build Docker images with private Python
dependencies, forwarding an SSH key to BuildKit instead of baking it in.

Add ``ns`` to your ``tasks.py``::

    from invoke import Collection
    import securebuild_tasks

    ns = Collection()                # or the ns you already have
    securebuild_tasks.add_to(ns)     # inv build-image, inv store-key, ...

Nothing is loaded at import time beyond invoke itself: no ``.env`` file, no
docker client, no keyring look-up.
"""

from __future__ import annotations

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
from .settings import Settings, resolve
from .tasks import add_to, make_collection, ns

__version__ = "0.1.0"

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
