"""What every task shares: resolving settings and turning errors into exits."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from ..errors import SecurebuildError
from ..index import adopt_env_token
from ..settings import NAMESPACE, Settings, resolve

F = TypeVar("F", bound=Callable[..., Any])


def _plain(value: Any) -> Any:
    """Turn invoke's DataProxy values into plain dicts."""
    if isinstance(value, Mapping) or hasattr(value, "keys"):
        return {str(k): _plain(value[k]) for k in value.keys()}  # noqa: SIM118 - DataProxy
    return value


def settings_for(ctx: Context, **flags: Any) -> Settings:
    """Resolve settings for a task: its flags over env, .env, config and defaults."""
    # Before anything else runs, so no child process inherits the index token.
    adopt_env_token()
    section = ctx.config.get(NAMESPACE) if hasattr(ctx.config, "get") else None
    config = _plain(section) if section is not None else {}
    return resolve(config, flags=flags, cwd=Path.cwd())


def silence_stdout() -> None:
    """Point stdout at the null device, so the interpreter's final flush into a
    closed pipe raises nothing."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def reports_errors(func: F) -> F:
    """Turn this project's errors into invoke's `Exit`: one line, its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SecurebuildError as exc:
            raise Exit(f"securebuild: error: {exc.line()}", code=exc.exit_code) from None
        except BrokenPipeError:
            # The reader went away (`inv show-settings | head`): stop quietly.
            silence_stdout()
            raise Exit(code=1) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature
