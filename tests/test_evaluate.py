import json

import evaluate
from conftest import tiny_args


def test_evaluate_compares_policies_on_fresh_samples(tiny, capsys):
    args = [a for a in tiny_args(tiny, "unused")
            if a.split("=")[0] in ("--DATASET", "--MAX_NEW_TOKENS")]
    assert evaluate.main([tiny["policy"], tiny["policy"], "--REWARD_MODEL=reward_fns:word_count",
                          "--EVAL_SAMPLES=2", *args]) == 0
    out = capsys.readouterr().out
    results = json.loads(out.strip().splitlines()[-1])
    assert [r["n"] for r in results] == [96, 96]  # 48 prompts x 2 samples each
    # The same policy with the same seed samples the same responses: zero gain, exactly.
    assert results[1]["gain"] == 0.0 and results[0]["mean"] > 0


def test_evaluate_refuses_a_missing_policy(tiny, capsys):
    assert evaluate.main([str(tiny["dir"] / "nope"), f"--DATASET={tiny['prompts']}"]) == 2
    assert "no such folder" in capsys.readouterr().err
