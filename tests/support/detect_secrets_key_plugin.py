"""A detect-secrets plugin that flags lines holding bytes of one particular key.

detect-secrets loads it from this file (``path: file://...``) and passes the
plugin's settings as keyword arguments: ``needles_file`` names a file with one
needle (a 40-character window of the key's base64 body, see leaks.py) a line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from detect_secrets.plugins.base import RegexBasedDetector


class KeyBytesDetector(RegexBasedDetector):
    """Bytes of the test's own private key, in any wrapping."""

    secret_type = "Bytes of the test's private key"
    denylist: list[re.Pattern[str]] = []  # noqa: RUF012 - set per instance below

    def __init__(self, needles_file: str = "", **kwargs: Any) -> None:
        needles = [
            line for line in Path(needles_file).read_text(encoding="ascii").splitlines() if line
        ]
        if not needles:
            raise ValueError(f"no needles in {needles_file!r}")
        self.denylist = [re.compile("|".join(re.escape(n) for n in needles))]
        self.needles_file = needles_file

    def json(self) -> dict[str, Any]:
        """Settings as detect-secrets records them in a baseline."""
        return {"name": type(self).__name__, "needles_file": self.needles_file}
