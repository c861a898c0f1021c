"""Which conclusions transfer between models, on hand-made results whose answer is known: per-window
NLLs of two models' methods built as the dense model's plus a fixed offset per method (plus noise),
collated as the workflow collates them (comparisons.compare, transfer.rank_correlations)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prunebench.reporting.comparisons import compare
from prunebench.reporting.narrative import across_models
from prunebench.reporting.results import Results, order_rows
from prunebench.reporting.tables import build_table
from prunebench.reporting.transfer import pair_transfer, rank_correlations, spearman

WINDOWS = 200


def hand_made(offsets: dict[str, dict[str, float]], noise: float = 0.02) -> Results:
    """Each model's dense window NLLs ~ N(3, 0.5), each method's the dense ones + its offset + N(0,
    noise) at ratio 0.2 (methods with equal offsets get identical NLLs: the same checkpoint)."""
    rng = np.random.default_rng(0)
    index = pd.MultiIndex.from_arrays([["perplexity"] * WINDOWS, ["wikitext2"] * WINDOWS, range(WINDOWS)],
                                      names=["kind", "set", "item"])
    runs, rows = {}, []
    for model, methods in offsets.items():
        dense = rng.normal(3.0, 0.5, WINDOWS)
        by_offset = {}
        for method, offset in {"dense": 0.0, **methods}.items():
            values = dense if method == "dense" else by_offset.setdefault(
                offset, dense + offset + rng.normal(0, noise, WINDOWS))
            ratio = 0.0 if method == "dense" else 0.2
            runs[(model, method, ratio, "none", len(runs))] = pd.Series(values, index=index)
            rows.append({"model": model, "method": method, "ratio": ratio, "tune": "none",
                         "wikitext2": math.exp(values.mean())})
    summary, items = order_rows(pd.DataFrame(rows)), pd.DataFrame(runs)
    return Results(summary, pd.DataFrame(), {}, {}, pd.DataFrame(), compare(summary, items, ["wikitext2"]),
                   rank_correlations(summary, items, ["wikitext2"]))


def verdicts(results: Results) -> dict[tuple[str, str], str]:
    pairs = pair_transfer(results.comparisons, "m1", "m2")
    return dict(zip(zip(pairs["method"], pairs["other"]), pairs["verdict"]))


SAME_ORDER = {"m1": {"a": 0.1, "b": 0.3, "c": 0.5, "d": 0.7}, "m2": {"a": 0.2, "b": 0.4, "c": 0.6, "d": 0.9}}


def test_clear_margins_in_the_same_order_on_both_models_transfer_with_rank_correlation_one():
    results = hand_made(SAME_ORDER)
    assert verdicts(results) == {pair: "same" for pair in [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"),
                                                           ("b", "d"), ("c", "d")]}
    (corr,) = results.correlations.itertuples()
    assert (corr.model_a, corr.model_b, corr.ratio, corr.column, corr.methods) == ("m1", "m2", 0.2, "wikitext2", 4)
    assert corr.rho == 1 and corr.low == 1 and corr.high == 1  # every resample keeps the order


def test_an_order_reversed_on_one_model_is_different_and_correlates_minus_one():
    results = hand_made({"m1": SAME_ORDER["m1"], "m2": {"a": 0.9, "b": 0.6, "c": 0.4, "d": 0.2}})
    assert set(verdicts(results).values()) == {"different"} and len(verdicts(results)) == 6
    (corr,) = results.correlations.itertuples()
    assert corr.rho == -1 and corr.low == -1 and corr.high == -1


def test_methods_one_model_cannot_separate_are_cannot_tell():
    """On m2, a and b are the same checkpoint (identical NLLs: the interval is [0, 0]), and so are c
    and d; every other pair is ordered alike on both models."""
    results = hand_made({"m1": SAME_ORDER["m1"], "m2": {"a": 0.2, "b": 0.2, "c": 0.6, "d": 0.6}})
    assert verdicts(results) == {("a", "b"): "cannot tell", ("c", "d"): "cannot tell", ("a", "c"): "same",
                                 ("a", "d"): "same", ("b", "c"): "same", ("b", "d"): "same"}
    (corr,) = results.correlations.itertuples()
    assert corr.rho == pytest.approx(2 / math.sqrt(5))  # ranks 1,2,3,4 against 1.5,1.5,3.5,3.5
    assert corr.low == corr.high == pytest.approx(2 / math.sqrt(5))


def test_overlapping_intervals_cannot_tell_and_widen_the_correlations_interval():
    """Offsets 0.005 apart under window noise 0.3: no pair is separated on m2, and its resampled
    orders vary, so the correlation's interval is wide."""
    results = hand_made({"m1": SAME_ORDER["m1"], "m2": {"a": 0.200, "b": 0.205, "c": 0.210, "d": 0.215}}, noise=0.3)
    assert set(verdicts(results).values()) == {"cannot tell"}
    (corr,) = results.correlations.itertuples()
    assert corr.low < 0 < corr.high and corr.high - corr.low > 1


def test_methods_that_all_tie_on_one_model_have_no_rank_correlation():
    results = hand_made({"m1": SAME_ORDER["m1"], "m2": dict.fromkeys("abcd", 0.3)})  # one checkpoint on m2
    assert set(verdicts(results).values()) == {"cannot tell"}
    (corr,) = results.correlations.itertuples()
    assert math.isnan(corr.rho) and math.isnan(corr.low) and math.isnan(corr.high)
    (_, rows), = build_table("correlation", results).groups
    assert [(c.text, c.detail) for c in rows[0][1]] == [("–", "a model's methods all tie"), ("4", "")]
    assert "Spearman" not in across_models(results)[0]


def test_a_method_on_one_model_only_is_in_no_pair_and_no_correlation():
    offsets = {"m1": {**SAME_ORDER["m1"], "e": 0.9}, "m2": SAME_ORDER["m2"]}
    results = hand_made(offsets)
    assert len(verdicts(results)) == 6 and not any("e" in pair for pair in verdicts(results))
    assert results.correlations["methods"].tolist() == [4]


def test_spearman_averages_ties_and_is_undefined_without_spread():
    assert spearman(np.array([1.0, 2, 3]), np.array([10.0, 20, 30]))[0] == 1
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([1.0, 1, 2, 2]))[0] == pytest.approx(2 / math.sqrt(5))
    assert np.isnan(spearman(np.array([1.0, 2, 3]), np.array([5.0, 5, 5]))[0])


def test_transfer_table_and_narrative_state_the_verdicts():
    results = hand_made({"m1": SAME_ORDER["m1"], "m2": {"a": 0.2, "b": 0.2, "c": 0.6, "d": 0.1}})
    # m2: d best; a = b; so a-b cannot tell, and d's pairs are reversed
    assert verdicts(results) == {("a", "b"): "cannot tell", ("a", "c"): "same", ("a", "d"): "different",
                                 ("b", "c"): "same", ("b", "d"): "different", ("c", "d"): "different"}
    table = build_table("transfer", results)
    assert table.columns == ["WikiText2↓ m1", "WikiText2↓ m2", "WikiText2↓ transfer"]
    (label, rows), = table.groups
    cells = dict(rows)["c vs d"]
    comp = results.comparisons.set_index(["model", "method", "reference_method", "reference"])
    m1 = comp.loc[("m1", "c", "d", "method")]
    assert label == "Ratio = 20% w/o tune" and cells[0].text == f"×{math.exp(m1['diff']):.2f}" == "×0.82"
    assert cells[1].text == "×1.65" and cells[2].text == "different"
    (text,) = across_models(results)
    assert text.startswith("**Across models (m1 and m2).** On WikiText-2 perplexity, the paired 95 % intervals "
                           "order 2 of 6 pairs of methods (compared at the same setting) the same way on both models, "
                           "3 the opposite way, and for 1 at least one model's interval includes no difference. "
                           "Holds on both: a over c at Ratio = 20% w/o tune; b over c at Ratio = 20% w/o tune. "
                           "Does not hold: a over d on m1, the reverse on m2 at Ratio = 20% w/o tune;")
    corr = results.correlations.iloc[0]
    assert (f"WikiText-2 perplexity at Ratio = 20% w/o tune: ρ = {corr['rho']:+.2f} [{corr['low']:+.2f}, "
            f"{corr['high']:+.2f}] over 4 methods") in text


def test_across_models_table_shows_each_method_against_its_own_dense_model():
    results = hand_made(SAME_ORDER)
    table = build_table("across_models", results)
    assert table.columns == ["m1 WikiText2↓ vs dense", "m2 WikiText2↓ vs dense"]
    (label, rows), = table.groups
    assert [name for name, _ in rows] == ["a", "b", "c", "d"] and label == "Ratio = 20% w/o tune"
    for name, cells in rows:  # the offsets are the log-perplexity differences to dense, up to the noise
        for model, cell in zip(("m1", "m2"), cells):
            low, high = (float(x) for x in cell.detail.strip("[]").split(", "))
            expected = math.exp(SAME_ORDER[model][name])
            assert float(cell.text.lstrip("×")) == pytest.approx(expected, abs=0.006)
            assert low - 0.005 <= expected <= high + 0.005 and high - low <= 0.02  # shown to 2 decimals
