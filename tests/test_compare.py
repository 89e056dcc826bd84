import json
import subprocess
import sys

import pytest

from conftest import ROOT


# slow (80 s): each algorithm trains in test_algorithms; compare.py's refusals are in test_hostile
@pytest.mark.slow
def test_compare_runs_every_algorithm_and_writes_the_picture_and_table(tmp_path):
    """A one-step comparison of the four algorithms on the embedded default task (the full one is
    100 steps)."""
    out = subprocess.run([sys.executable, "bench/compare.py", "--responses=32", f"--out={tmp_path}",
                          "--",
                          "--EVAL_SAMPLES=1", "--MAX_NEW_TOKENS=8"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "compare.png").stat().st_size > 20_000
    table = (tmp_path / "compare.md").read_text()
    for algorithm in ("ppo", "grpo", "dapo", "reinforce"):
        # dapo may stop after 1
        assert f"| {algorithm} | 2 | " in table or f"| {algorithm} | 1 | " in table
        rows = [json.loads(line) for line in open(tmp_path / algorithm / "metrics.jsonl")]
        assert rows[-1]["responses_generated"] >= 32 and all("kl" in r for r in rows)
