"""What every task shares: resolving settings and turning errors into exits."""

from __future__ import annotations

import atexit
import functools
import gc
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ..errors import (
    KeySourceError,
    SecurebuildError,
    SettingsError,
    silence_stdout,
    use_task_prefix,
)
from ..index import adopt_env_token
from ..settings import HELP, NAMESPACE, Settings, resolve

F = TypeVar("F", bound=Callable[..., Any])


def _plain(value: Any) -> Any:
    """Turn invoke's DataProxy values into plain dicts."""
    if isinstance(value, Mapping) or hasattr(value, "keys"):
        return {str(k): _plain(value[k]) for k in value.keys()}  # noqa: SIM118 - DataProxy
    return value


def project_dir(ctx: Context) -> Path:
    """The project's folder: that of the tasks.py `inv` loaded (found upwards from
    the current folder, where invoke reads the project's invoke.yaml too), else
    the current folder (the `securebuild` command). Its .env and every relative
    path setting are read from there, so `inv` works alike from any subfolder.
    """
    prefix = getattr(ctx.config, "_project_prefix", None)
    return Path(prefix) if isinstance(prefix, str) and prefix else Path.cwd()


def settings_for(ctx: Context, **flags: Any) -> Settings:
    """Resolve settings for a task: its flags over env, .env, config and defaults."""
    # Before anything else runs, so no child process inherits the index token.
    adopt_env_token()
    section = ctx.config.get(NAMESPACE) if hasattr(ctx.config, "get") else None
    config = _plain(section) if section is not None else {}
    return resolve(config, flags=flags, cwd=project_dir(ctx))


@functools.cache
def _no_final_collection() -> None:
    """At exit, spare the interpreter its last full garbage collection.

    That collection walks every object invoke and the tool ever made (35 to
    70 ms measured on an `inv build-image` that found everything cached,
    about a sixth of the tool's own time there) only for the process to end.
    `gc.freeze`, run by atexit once every task has returned, moves them all
    out of its reach; objects still referenced are freed as usual while the
    modules are torn down, and the operating system takes back the rest.
    Every file and process this tool opens is closed by a context manager,
    never by the collector.
    """
    atexit.register(gc.freeze)


#: Tasks that change nothing, or (clean) that take ``inv --dry`` as their own dry run.
_SAFE_UNDER_DRY = frozenset({"doctor", "show_settings", "audit", "clean"})


def dry(ctx: Any) -> bool:
    """Whether ``inv --dry`` (invoke's "echo commands instead of running") is on."""
    run = getattr(getattr(ctx, "config", None), "run", None)
    return bool(getattr(run, "dry", False))


def _invoked_prefix(name: str) -> str:
    """The collection prefix this task was called with (``securebuild.`` in
    ``inv securebuild.clean``): a word of the command line that ends in
    ``.NAME`` and is the full name of a task in the collection of a loaded
    module (``ns``, as invoke looks for it; the module is "tasks", or what
    ``inv -c NAME`` named). invoke tells a task nothing of the name it was
    called by; an option's value (``--lock-file requirements.lock``) names no
    task, so it is no prefix. Empty when the tasks are composed at the top."""
    words = [w for w in sys.argv[1:] if w.endswith(f".{name}") and not w.startswith("-")]
    if not words:
        return ""
    for module in list(sys.modules.values()):
        try:  # a module's lazy attributes may raise anything when asked
            found = getattr(module, "ns", None) or getattr(module, "namespace", None)
            names = getattr(found, "task_names", None)
        except Exception:  # noqa: S112 - such a module holds no tasks.py collection
            continue
        if isinstance(names, dict):
            for word in words:
                if word in names:
                    return word[: -len(name)]
    return ""


def reports_errors(func: F) -> F:
    """Turn this project's errors into invoke's `Exit`: one line, its exit code.

    Under ``inv --dry`` a task that would change something stops before it
    starts: invoke's dry mode only echoes the shell commands a task runs through
    it, and these tasks run none, so they would act for real.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _no_final_collection()
        use_task_prefix(_invoked_prefix(func.__name__.replace("_", "-")))
        if args and dry(args[0]) and func.__name__ not in _SAFE_UNDER_DRY:
            name = func.__name__.replace("_", "-")
            raise Exit(
                f"securebuild: error: --dry echoes the shell commands a task runs through"
                f" invoke, and {name} runs none, so it would act for real: nothing was done;"
                " run it without --dry (clean --dry-run lists what clean would remove)",
                code=2,
            )
        try:
            return func(*args, **kwargs)
        except SecurebuildError as exc:
            raise Exit(f"securebuild: error: {exc.line()}", code=exc.exit_code) from None
        except EOFError:
            # Ctrl-D at a hidden prompt (getpass): nothing was entered, nothing
            # stored. The prompt's line was never ended: the error starts its own.
            print(file=sys.stderr)
            error = KeySourceError(
                "standard input ended at the prompt, so nothing was entered",
                hint="type the answer and press Enter, or pipe it on standard input",
            )
            raise Exit(f"securebuild: error: {error.line()}", code=error.exit_code) from None
        except BrokenPipeError:
            # The reader went away (`inv show-settings | head`): stop quietly.
            silence_stdout()
            raise Exit(code=1) from None
        except OSError as exc:
            if exc.filename is None:
                raise
            # A path the settings named that the system will not look at (a name
            # too long, a folder that cannot be entered, a loop of links): the
            # checks that name each file ask `is_file` and the like, which pass
            # these on rather than answer False.
            refused = SettingsError(
                f"cannot use the path {exc.filename} ({exc.strerror or exc.__class__.__name__})",
                hint="check the settings that name files and folders (`inv show-settings`)",
            )
            raise Exit(f"securebuild: error: {refused.line()}", code=refused.exit_code) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature


def setting_task(
    *names: str, switches: tuple[str, ...] = (), extra_help: Mapping[str, str] | None = None
) -> Callable[[Callable[..., None]], Any]:
    """Make ``body(c, settings, **own)`` a task with a flag for each setting it takes.

    Each of ``names`` becomes a long flag (``key_file``: ``--key-file VALUE``)
    with the setting's help from `HELP` and no default of its own, so a flag
    not given leaves the setting to the environment, ``.env``, config and the
    defaults; each of ``switches`` becomes a flag that only turns its setting
    on (``--no-cache``). The body gets the resolved `Settings`, then the flags
    of its own signature (``extra_help`` describes those).

    invoke reads a task's flags from its signature, so the settings' flags are
    given to it as one (``__signature__``) instead of being written out, with
    the same list again for `settings_for`, in every task.
    """
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD

    def decorate(body: Callable[..., None]) -> Any:
        own = list(inspect.signature(body).parameters.values())[2:]  # after c, settings
        signature = inspect.Signature(
            [
                inspect.Parameter("c", kind, annotation=Context),
                *(inspect.Parameter(n, kind, default=None, annotation="str | None") for n in names),
                *(inspect.Parameter(n, kind, default=False, annotation="bool") for n in switches),
                *own,
            ]
        )

        @functools.wraps(body)
        def run(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = dict(bound.arguments)
            c = given.pop("c")
            flags = {n: given.pop(n) for n in names}
            # A switch only ever turns its setting on; off means "not given".
            flags.update({n: True if given.pop(n) else None for n in switches})
            body(c, settings_for(c, **flags), **given)

        run.__signature__ = signature  # type: ignore[attr-defined]
        helps = {n.replace("_", "-"): HELP[n] for n in (*names, *switches)}
        helps.update(extra_help or {})
        # Long flags only: with this many options invoke's short flags run out.
        return task(auto_shortflags=False, help=helps)(reports_errors(run))

    return decorate


def config_file_error(exc: BaseException) -> str | None:
    """One line for an invoke config file that could not be read or merged, else None.

    invoke loads ``invoke.yaml`` / ``securebuild.yaml`` itself, before any task
    runs, and lets a YAML syntax error or a ``securebuild:`` section that is no
    mapping escape as a traceback. The file is named from invoke's own loader
    frame, so the line says which file to fix.
    """
    filepath = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        local = frame.f_locals
        if frame.f_code.co_name == "_load_file" and "filepath" in local:
            filepath = str(local["filepath"])  # reading it failed
        elif frame.f_code.co_name == "_merge_file" and "self" in local and "name" in local:
            filepath = str(getattr(local["self"], f"_{local['name']}_path", None) or "")
            filepath = filepath or None  # merging what was read from it failed
        tb = tb.tb_next
    if filepath is None:
        return None
    if isinstance(exc, UnicodeDecodeError):
        return f"securebuild: error: {filepath} is not UTF-8 text: save it as UTF-8"
    if isinstance(exc, IsADirectoryError):
        return f"securebuild: error: {filepath} is a folder, not a config file: give a file"
    if isinstance(exc, OSError):
        why = exc.strerror or type(exc).__name__
        return f"securebuild: error: cannot read {filepath} ({why}): check the file"
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        why = f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
        return f"securebuild: error: cannot parse {filepath}: {why}: fix its YAML syntax"
    if isinstance(exc, json.JSONDecodeError):  # invoke.json
        return f"securebuild: error: cannot parse {filepath}: {exc}: fix its JSON syntax"
    return (
        f"securebuild: error: {filepath} cannot be used as configuration ({type(exc).__name__}):"
        f" it must be a mapping whose {NAMESPACE}: section maps setting names to values"
    )


def install_config_error_hook() -> None:
    """Report invoke config file errors (and this tool's errors raised while
    ``inv`` imports a tasks.py) as one line under ``inv`` too.

    ``inv`` is invoke's own program, so the only place left to catch its config
    loading errors is the interpreter's last resort. Every other exception goes
    to the hook that was there before, unchanged.
    """
    previous = sys.excepthook
    if getattr(previous, "_securebuild", False):
        return

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        line, code = config_file_error(exc), 2
        if line is None and isinstance(exc, SecurebuildError):
            # Raised while invoke imported the tasks.py (add_to's name clash).
            line, code = f"securebuild: error: {exc.line()}", exc.exit_code
        if line is None:
            previous(kind, exc, tb)
            return
        sys.stdout.flush()
        sys.stderr.write(line.replace("\n", " ") + "\n")
        sys.stderr.flush()
        if sys.flags.interactive or hasattr(sys, "ps1"):
            return  # `python -i`, a REPL: the line is said, the session goes on
        os._exit(code)

    hook._securebuild = True  # type: ignore[attr-defined]
    sys.excepthook = hook
