"""The benchmark's example app: imports every dependency it was built with."""

import importlib
import sys

NAMES = [
    "attrs",
    "charset_normalizer",
    "click",
    "jinja2",
    "markupsafe",
    "msgpack",
    "numpy",
    "orjson",
    "packaging",
    "psutil",
    "dateutil",
    "yaml",
    "requests",
    "typing_extensions",
    "privpkg",
]

for name in NAMES:
    importlib.import_module(name)
print("ok", len(NAMES), "modules", file=sys.stderr)
