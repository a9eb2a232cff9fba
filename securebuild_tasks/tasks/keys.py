"""Tasks that put a key (or its passphrase) into the OS keyring and take it out."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from ..errors import KeySourceError
from ..index import check_token_text, read_token_input
from ..keys import delete_secret, forget_key_entries, store_key_entries, store_secret
from ._common import reports_errors, settings_for


def _read_key(key_file: str) -> tuple[bytes, str]:
    if key_file == "-":
        return sys.stdin.buffer.read(), "key from standard input"
    path = Path(key_file).expanduser()
    try:
        return path.read_bytes(), f"key file {path}"
    except OSError as exc:
        raise KeySourceError(
            f"cannot read key file {path} ({exc.strerror or exc.__class__.__name__})",
            hint="give the path of an SSH private key, or - to read it from standard input",
        ) from None


def _terminal() -> bool:
    """Whether getpass can ask at a terminal even though standard input is a pipe:
    it reads /dev/tty (the console, on Windows) rather than standard input."""
    if sys.platform == "win32":
        return True
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _ask_passphrase(label: str, *, key_on_stdin: bool = False) -> bytes:
    if sys.stdin.isatty() or (key_on_stdin and _terminal()):
        return getpass.getpass(f"Passphrase for {label}: ").encode("utf-8")
    if key_on_stdin:
        # Standard input held the key and is used up: nothing is left to read.
        raise KeySourceError(
            f"the {label} is encrypted, and there is no terminal to type its passphrase at"
            " (standard input held the key)",
            hint="run it in a terminal, or give the key's path (--key-file PATH) and pipe"
            " the passphrase",
        )
    # Not a terminal: the passphrase is piped, one line (never taken from argv).
    return sys.stdin.buffer.readline().rstrip(b"\r\n")


@task(
    help={
        "key-file": "private key to store; - reads it from standard input",
        "passphrase-only": "store only the key file's passphrase (the key stays in its file)",
    }
)
@reports_errors
def store_key(c: Context, key_file: str, passphrase_only: bool = False) -> None:
    """Store an SSH private key, or only its passphrase, in the OS keyring."""
    settings = settings_for(c)
    if passphrase_only and key_file == "-":
        raise KeySourceError(
            "--passphrase-only needs the key file's path, not -",
            hint="the key stays in its file; only the passphrase goes to the keyring",
        )
    data, label = _read_key(key_file)
    stored = store_key_entries(
        settings,
        data,
        label,
        lambda: _ask_passphrase(label, key_on_stdin=key_file == "-"),
        passphrase_only=passphrase_only,
    )
    for entry in stored:
        print(f"securebuild: stored {entry} in the keyring", file=sys.stderr)


@task
@reports_errors
def forget_key(c: Context) -> None:
    """Remove the stored SSH key and its passphrase from the OS keyring."""
    settings = settings_for(c)
    removed = forget_key_entries(settings)
    if not removed:
        print(
            f"securebuild: nothing stored under {settings.keyring_service}/{settings.keyring_key}",
            file=sys.stderr,
        )
    for entry in removed:
        print(f"securebuild: removed {entry} from the keyring", file=sys.stderr)


@task
@reports_errors
def store_token(c: Context) -> None:
    """Store the private index's token (index_url) in the OS keyring.

    The token is typed at a hidden prompt or piped on standard input, never
    given as an argument: argv is readable by every user of the machine.
    """
    settings = settings_for(c)
    where = f"{settings.keyring_service}/{settings.keyring_token}"
    token = check_token_text(read_token_input(f"Token for {where}: "), "token given")
    store_secret(settings, settings.keyring_token, token)
    print(f"securebuild: stored {where} in the keyring", file=sys.stderr)


@task
@reports_errors
def forget_token(c: Context) -> None:
    """Remove the private index's token from the OS keyring."""
    settings = settings_for(c)
    where = f"{settings.keyring_service}/{settings.keyring_token}"
    removed = delete_secret(settings, settings.keyring_token)
    print(
        f"securebuild: {'removed' if removed else 'nothing stored under'} {where}"
        f"{' from the keyring' if removed else ''}",
        file=sys.stderr,
    )
