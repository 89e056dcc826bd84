import bench
from conftest import tiny_args


def test_bench_phases_add_up_to_the_step(tiny, tmp_path):
    settings = [a for a in tiny_args(tiny, tmp_path) if not a.startswith(("--OUTPUT_DIR=", "--MAX_STEPS="))]
    summary = bench.measure(settings, steps=2, warmup=1)
    phases = sum(summary[k]["mean"] for k in ("time_generate", "time_reward", "time_forward", "time_update"))
    step = summary["step_time"]["mean"]
    assert 0 < phases <= step and phases > 0.9 * step  # the four phases are (nearly) the whole step
    assert summary["tokens_per_sec"] > 0 and summary["peak_rss_mib"] > 100 and summary["peak_cuda_mib"] == {}
    assert "| update |" in bench.phase_table(summary)
