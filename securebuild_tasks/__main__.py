"""``python -m securebuild_tasks``: the same as the ``securebuild`` command."""

from .cli import main

main()
