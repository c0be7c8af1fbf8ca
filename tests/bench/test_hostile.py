"""bench/hostile.py end to end at a small size: a real `rerankd serve`, the fast fake and the
flooder process; its verdicts that do not depend on timing must hold, and the report renders."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import hostile


async def test_a_small_hostile_run_caps_series_answers_nothing_internal_and_renders(tmp_path: Path) -> None:
    args = argparse.Namespace(floods=3, rounds=1, round_seconds=0.2, names=30)
    results = await hostile.run(args, tmp_path)
    assert results.verdict["series_capped"] and results.verdict["nothing_internal"]
    assert results.statuses["HTTP 431"] >= 3 and set(results.nested.values()) <= {
        "INVALID_ARGUMENT",
        "HTTP 400",
    }
    out = tmp_path / "hostile.md"
    hostile.write_markdown(results, out, "python -m bench.hostile (test)")
    assert "| 30 | " in out.read_text() and "x-portkey-metadata" in out.read_text()
