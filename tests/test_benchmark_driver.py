"""The train-step benchmark's driver logic (no timing here): how interleaved rounds become figures, and the worker
protocol. The timed runs themselves live in `benchmarks/`, not in tests."""

import io
import json
import statistics

import pytest

from benchmarks import train_step


def test_combine_pairs_each_round_and_takes_medians():
    # The machine slows down by 2x between the rounds; per-round ratios see 2.0 and 1.5 regardless.
    times = {"jax": [[1.0, 1.1, 1.2], [2.0, 2.1, 2.2]], "torch": [[2.2, 2.0, 2.4], [3.3, 3.0, 3.3]]}
    reports = {"jax": {"impl": "jax", "rss_mib": 10.0}, "torch": {"impl": "torch eager", "rss_mib": 20.0}}
    out = train_step.combine(times, reports)
    assert out["jax"]["step_s"] == pytest.approx(statistics.median([1.0, 1.1, 1.2, 2.0, 2.1, 2.2]))
    assert out["jax"]["round_step_s"] == pytest.approx([1.1, 2.1])
    assert out["jax"]["rounds"] == 2 and "ratios" not in out["jax"]
    assert out["torch"]["ratios"] == pytest.approx([2.2 / 1.1, 3.3 / 2.1])
    assert out["torch"]["rss_mib"] == 20.0 and out["torch"]["impl"] == "torch eager"
    row = {"name": "primus", "batch": 4, **out}
    assert train_step._ratio(row, "torch") == "1.79 (1.57-2.00)"
    assert train_step._ratio(row, "torch_compile") == "—"


def test_worker_protocol_runs_blocks_then_reports(monkeypatch, capsys):
    class FakeSession:
        def __init__(self):
            self.steps = 0

        def run(self, steps):
            self.steps += steps
            return [0.5] * steps

        def finish(self, count_flops):
            return {"impl": "fake", "steps": self.steps, "flops": 1.0 if count_flops else None}

    monkeypatch.setattr("sys.stdin", io.StringIO("run 3\nrun 2\nfinish flops\nrun 9\n"))
    train_step.serve(FakeSession())
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert answers == [{"ready": True}, {"times": [0.5] * 3}, {"times": [0.5] * 2},
                       {"impl": "fake", "steps": 5, "flops": 1.0}]  # nothing read after "finish"


def test_worker_rejects_an_unknown_command(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("jump 3\n"))
    with pytest.raises(ValueError, match="unknown command 'jump 3"):
        train_step.serve(object())
