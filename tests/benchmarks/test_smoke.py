"""The benchmark script still runs end to end (one quick iteration, no time limits).

It builds the example the old way, by hand and with this tool, on the test
engine, and writes its figures as JSON. The test checks that every figure
was measured for every variant, and the properties that are not times: where
the added bytes go, and that the tool's image holds none of the build's
leftovers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from securebuild_tasks.engine import Engine

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {"baseline-old", "baseline-hand", "securebuild"}


def test_benchmark_runs_and_reports_every_figure(
    engine: Engine, base_image: str, tmp_path: Path
) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    for scenario in ("cold", "noop", "app", "dep", "tag"):
        assert set(figures["times"][scenario]) == VARIANTS, scenario
        assert all(s > 0 for v in figures["times"][scenario].values() for s in v)
    assert set(figures["bytes_added"]) == VARIANTS
    assert figures["bytes_added"]["securebuild"] > 0
    assert figures["leftovers"]["securebuild"] == []
    # The baseline really is the old recipe: its image keeps the wheels it copied.
    assert {"wheel files", "vendor folder"} <= set(figures["leftovers"]["baseline-old"])
    # Where the bytes go: the kinds add up to what the engine reports, and the
    # tool's image holds installed packages and nothing of the build.
    kinds = figures["bytes_by_kind"]
    assert set(kinds) == VARIANTS
    for variant, split in kinds.items():
        counted, reported = sum(split.values()), figures["bytes_added"][variant]
        assert abs(counted - reported) <= 0.02 * reported, (variant, split, reported)
    assert kinds["securebuild"]["packages"] > 0
    assert kinds["securebuild"]["wheel files"] == kinds["securebuild"]["caches"] == 0
    assert kinds["securebuild"]["bytecode"] == 0
    assert kinds["baseline-old"]["wheel files"] > 0
    assert kinds["baseline-old"]["bytecode"] > 0
    assert figures["lock_seconds"] > 0
    assert {"python -c pass", "inv --list", "securebuild --help"} <= set(figures["cli"])
    assert "floor: the installed packages alone" in done.stdout
    verdicts = {v["what"] for v in figures["verdicts"]}
    assert any("cold build" in v for v in verdicts)
    # The printed table names every scenario and a PASS/FAIL per target.
    assert "cold build, empty BuildKit cache" in done.stdout
    assert done.stdout.count("PASS") + done.stdout.count("FAIL") == len(figures["verdicts"])
