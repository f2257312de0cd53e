"""benchmarks/gpu_check.sh --dry-run: the GPU check's JAX path (EVI-MAE, Audio-MAE, PRIMUS train steps in bf16 with
FLOPs and MFU) runs end to end on CPU with small shapes."""

import json
import os
import subprocess

from tests import run_helpers


def test_gpu_check_dry_run_reports_every_system():
    script = os.path.join(run_helpers.REPO, "benchmarks", "gpu_check.sh")
    out = subprocess.run([script, "--dry-run"], cwd=run_helpers.REPO, capture_output=True, text=True,
                         env=run_helpers.env(1, PYTHON=__import__("sys").executable), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["system"] for r in rows] == ["evi_mae", "audio_mae", "primus"]
    for r in rows:
        assert r["samples_per_s"] > 0 and r["tflops_per_step"] > 0 and r["dtype"] in ("bfloat16", "fp32"), r
        assert r["loss"] == r["loss"], r  # finite
