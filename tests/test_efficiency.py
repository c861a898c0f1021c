"""The paired, interleaved speed measurement on a tiny LLaMA whose clock is simulated: each forward
pass costs its FLOPs on a machine that keeps slowing down, so the true speedup is known exactly and
drift is the enemy the pairing must defeat; the interval arithmetic on hand-checked numbers."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import tiny_model

from prunebench.evaluation import efficiency
from prunebench.evaluation.efficiency import flops_per_token, pair_row, paired_speed, speedup_interval
from prunebench.pruning.structure import PruningPlan, Shapes
from prunebench.pruning.surgery import apply_plan


class DriftingClock:
    """Time advances only by forward passes: tokens x FLOPs per token of the model that ran, times a
    load factor that grows by `drift` with every pass (a machine getting busier)."""

    def __init__(self, drift: float = 0.005):
        self.now, self.load, self.drift = 0.0, 1.0, drift

    def attach(self, model):
        cost = flops_per_token(model) * 1e-9

        def tick(_module, args, kwargs, _out):
            ids = args[0] if args else kwargs["input_ids"]
            self.now += ids.numel() * cost * self.load
            self.load *= 1 + self.drift

        model.register_forward_hook(tick, with_kwargs=True)
        return model


@pytest.fixture
def clock(monkeypatch):
    clock = DriftingClock()
    monkeypatch.setattr(efficiency, "_clock", lambda device: clock.now)
    return clock


def test_pairing_recovers_the_true_speedup_despite_drift(clock):
    dense = tiny_model(kv_heads=2, layers=4)
    short = copy.deepcopy(dense)
    apply_plan(short, PruningPlan.without_layers(Shapes.of(dense), [1, 2]))
    truth = flops_per_token(dense) / flops_per_token(short)  # the simulated machine's real speedup
    clock.attach(dense), clock.attach(short)
    result = paired_speed(dense, short, prefill_batches=[1, 4], prefill_tokens=16, decode_tokens=4, repeats=6,
                          max_repeats=6)
    assert result["repeats"] == 6
    assert clock.load > 1.5  # the machine slowed down by half over the run (84 passes)
    for key in ("prefill_b1", "prefill_b4", "decode"):
        m = result["measures"][key]
        assert m["low"] <= truth <= m["high"]
        assert m["speedup"] == pytest.approx(truth, rel=0.02)


def test_a_model_against_itself_holds_one_and_repeats_stop_when_precise_enough(clock):
    dense = tiny_model(kv_heads=2, layers=3)
    twin = clock.attach(copy.deepcopy(dense))  # copied before its clock hook: one hook each
    clock.attach(dense)
    result = paired_speed(dense, twin, prefill_batches=[1], prefill_tokens=8, decode_tokens=2, repeats=3,
                          max_repeats=10, max_halfwidth=0.05)
    assert result["repeats"] == 3  # drift of 0.5 % per pass: every interval is within +-5 % at once
    for m in result["measures"].values():
        assert m["low"] <= 1 <= m["high"] and m["speedup"] == pytest.approx(1, abs=0.02)  # 3 passes of drift
    strict = paired_speed(dense, twin, prefill_batches=[1], prefill_tokens=8, decode_tokens=2, repeats=3,
                          max_repeats=5, max_halfwidth=1e-6)
    assert strict["repeats"] == 5  # never precise enough: stops at max_repeats


def test_speedup_interval_is_the_median_ratio_with_a_percentile_bootstrap():
    dense = [2.0, 2.2, 1.9, 2.0, 2.4]
    model = [1.0, 1.0, 1.0, 1.25, 1.0]  # ratios 2.0, 2.2, 1.9, 1.6, 2.4: median 2.0
    mid, low, high = speedup_interval(dense, model, seed=0)
    assert mid == 2.0 and 1.6 <= low <= mid <= high <= 2.4
    assert speedup_interval(dense, model, seed=0) == (mid, low, high)  # seeded
    assert speedup_interval([3.0, 3.0], [1.5, 1.5]) == (2.0, 2.0, 2.0)  # no spread, no width
    wide = speedup_interval(dense * 4, model * 4, confidence=0.99)
    narrow = speedup_interval(dense * 4, model * 4, confidence=0.5)
    assert wide[1] <= narrow[1] <= narrow[2] <= wide[2]


def test_pair_row_relates_the_model_to_dense_and_the_flop_ideal():
    result = {"params": 60, "flops_per_token": 50, "peak_memory_mb": 900.0, "process_baseline_mb": 400.0,
              "repeats": 7, "wall_s": 12.5, "cpu_s": 20.0, "prefill_tokens": 128,
              "dense": {"params": 100, "flops_per_token": 100},
              "measures": {"prefill_b8": {"model_s": 0.5, "dense_s": 0.9, "speedup": 1.8, "low": 1.7, "high": 1.9},
                           "decode": {"model_s": 0.02, "dense_s": 0.03, "speedup": 1.5, "low": 1.4, "high": 1.6}}}
    row = pair_row(result)
    assert row["params_ratio"] == 0.6 and row["flops_ratio"] == 0.5 and row["ideal_speedup"] == 2.0
    assert row["prefill_b8_tokens_per_s"] == 8 * 128 / 0.5 and row["decode_ms_per_token"] == 20.0
    assert row["prefill_b8_tokens_per_s_dense"] == 8 * 128 / 0.9 and row["decode_ms_per_token_dense"] == 30.0
    assert (row["prefill_b8_speedup"], row["prefill_b8_speedup_low"], row["prefill_b8_speedup_high"]) == (1.8, 1.7, 1.9)
    assert row["prefill_b8_vs_ideal"] == 0.9 and row["decode_vs_ideal"] == 0.75
    assert (row["repeats"], row["wall_s"], row["cpu_s"]) == (7, 12.5, 20.0) and np.isfinite(row["peak_memory_mb"])


def test_decode_is_timed_one_token_per_step_on_the_prompts_cache():
    model = tiny_model(kv_heads=2, layers=3)
    ids = torch.randint(0, model.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    calls = []
    model.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape))
    times = efficiency.run_workload(model, ids, decode_tokens=3)
    assert set(times) == {"prefill_b1", "decode"} and all(t > 0 for t in times.values())
    assert calls == [torch.Size([1, 6])] + [torch.Size([1, 1])] * 3  # one prefill, then one token per step
