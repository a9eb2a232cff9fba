"""The invoke `Program` behind the ``securebuild`` command.

It has config files of its own (``securebuild.yaml`` in the project,
``~/.securebuild.yaml``, ``/etc/securebuild.yaml``). Settings still come from
the ``securebuild`` section, ``SECUREBUILD_*`` variables and ``.env``, exactly
as under ``inv``. `cli.main` imports this module only when a task is to run or
invoke itself must answer (``--help <task>``, ``--list-format``, completion).
"""

from __future__ import annotations

import os
import sys

from invoke.config import Config
from invoke.program import Program

from . import __version__
from .errors import silence_stdout, use_command
from .settings import INVOKE_ENV_PREFIX
from .tasks import make_collection
from .tasks._common import config_file_error


class SecurebuildConfig(Config):
    """invoke's Config with this tool's file names.

    invoke reads environment variables under ``env_prefix`` as its own config;
    ``SECUREBUILD_*`` belongs to the tool's settings, so invoke gets a prefix
    that cannot collide with a setting name.
    """

    prefix = "securebuild"
    env_prefix = INVOKE_ENV_PREFIX  # type: ignore[assignment]  # invoke types it as None


class SecurebuildProgram(Program):
    """A Program whose project config file is looked for in the working directory.

    invoke finds ``invoke.yaml`` next to a discovered tasks.py; this command
    has none, so ``securebuild.yaml`` is read from where it is run.
    """

    def create_config(self) -> None:
        super().create_config()
        self.config.set_project_location(os.getcwd())
        self.config.load_project()


program = SecurebuildProgram(
    namespace=make_collection(),
    version=__version__,
    name="securebuild",
    binary="securebuild",
    binary_names=["securebuild"],
    config_class=SecurebuildConfig,
)


def run() -> None:
    """Run the program on ``sys.argv``, a config file's error as one line."""
    use_command("securebuild")  # hints name the command that is running
    try:
        program.run()
    except BrokenPipeError:
        # `securebuild --help build-image | head`: the reader left; invoke's
        # own help printing does not handle that, so stop quietly here.
        silence_stdout()
        sys.exit(1)
    except Exception as exc:
        line = config_file_error(exc)
        if line is None:
            raise
        sys.stderr.write(line.replace("\n", " ") + "\n")
        sys.exit(2)


if __name__ == "__main__":
    # `python -m securebuild_tasks.program ...`: every command line through
    # invoke, the quick answers of `cli` included (the tests compare the two).
    run()
