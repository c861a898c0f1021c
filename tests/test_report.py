"""Reports from the committed results fixture (tests/fixtures/report: a real run of the suite on two
tiny random LLaMAs at both default ratios, three methods with two calibration seeds at 0.2):
collation of seeds and paired comparisons, tables, figures, the README and its "what we see"."""
from __future__ import annotations

import copy
import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from prunebench.evaluation.items import read_items
from prunebench.reporting.narrative import what_we_see
from prunebench.reporting.plots import build_figure, figure_names, save
from prunebench.reporting.protocol import DAGGER, calibration_notes, recovery_notes
from prunebench.reporting.readme import readme
from prunebench.reporting.results import (
    TASK_COLUMNS,
    Results,
    collate,
    load_results,
    method_label,
    order_rows,
    setting_label,
    summary_row,
)
from prunebench.reporting.tables import REFERENCE, Cell, _ranks, build_table, render, table_names
from prunebench.reporting.tradeoff import pareto_front, quality_speed

FIXTURE = Path(__file__).parent / "fixtures" / "report"


def fixture_results() -> Results:
    results = FIXTURE / "results"
    return load_results(results / "summary.csv", sorted(results.glob("*/*/*/metrics.json")),
                        sorted(results.glob("*/efficiency.csv")), yaml.safe_load((FIXTURE / "config.yaml").read_text()),
                        results / "seeds.csv", results / "comparisons.csv", results / "correlations.csv")


@pytest.fixture(scope="module")
def results() -> Results:
    return fixture_results()


def markdown(table) -> str:
    """A table's Markdown with tabulate's column padding squeezed: rows read "| a | b |"."""
    return re.sub(r" +", " ", render(table, "md"))


def untuned(results: Results) -> pd.DataFrame:
    return results.summary[results.summary["tune"] == "none"]


def with_tuned_copy(results: Results) -> Results:
    """The fixture's w/o tune rows plus a w/ tune row for every pruned one, its perplexity halved
    and its average raised by 0.1 (a test construct for the grouping and the recovery sentence)."""
    summary = untuned(results)
    pruned = summary[summary["method"] != "dense"]
    tuned = pruned.assign(tune="lora", wikitext2=pruned["wikitext2"] / 2, average=pruned["average"] + 0.1)
    metrics = {k: m for k, m in results.metrics.items() if k[3] == "none"}
    for _, row in tuned.iterrows():
        metrics[(row["model"], row["method"], float(row["ratio"]), "lora")] = {
            **results.metrics[(row["model"], row["method"], float(row["ratio"]), "none")], "tune": "lora"}
    summary = order_rows(pd.concat([summary, tuned], ignore_index=True))
    return Results(summary, results.efficiency, metrics, results.config, results.seeds, results.comparisons)


# --- loading -------------------------------------------------------------------------------------

def test_rows_are_ordered_dense_first_with_subsample_flags_and_average_stderr(results):
    summary = results.summary
    assert len(results.models) == 2
    for model in results.models:
        rows = summary[summary["model"] == model]
        assert rows.iloc[0]["method"] == "dense"
        assert list(rows["ratio"]) == sorted(rows["ratio"])
    # the fixture evaluates 4 windows and 3 documents per task: every number is a subsample
    assert summary["wikitext2_subsampled"].all() and summary["boolq_subsampled"].all()
    assert summary["average_subsampled"].all()
    row = summary.iloc[1]
    expected = math.sqrt(sum(row[f"{c}_stderr"] ** 2 for c in TASK_COLUMNS)) / len(TASK_COLUMNS)
    assert row["average_stderr"] == pytest.approx(expected)


def test_setting_labels_follow_the_papers():
    assert setting_label(0.0, "none") == "Ratio = 0%"
    assert setting_label(0.2, "none") == "Ratio = 20% w/o tune"
    assert setting_label(0.5, "lora") == "Ratio = 50% w/ tune"
    assert setting_label(0.5, None) == "Ratio = 50%"
    assert method_label("llm-pruner-element1") == "LLM-Pruner Element¹"
    assert method_label("my-new-method") == "my-new-method"


# --- collation: items, seeds, shared evaluations, paired comparisons -------------------------------

def fixture_runs():
    """Every run's metrics.json with its items."""
    for path in sorted((FIXTURE / "results").glob("*/*/*/metrics.json")):
        yield json.loads(path.read_text()), read_items(path.with_name("items.csv"))


def test_items_reproduce_every_metrics_json_and_pair_across_runs():
    keys = {}
    for metrics, items in fixture_runs():
        for name, r in metrics["perplexity"].items():
            nll = items[(items["kind"] == "perplexity") & (items["set"] == name)]["value"]
            assert len(nll) == r["windows"] == 4 and math.exp(nll.mean()) == pytest.approx(r["ppl"], rel=1e-12)
        for task, r in metrics["zeroshot"].items():
            docs = items[(items["kind"] == "zeroshot") & (items["set"] == task)]
            assert len(docs) == r["docs"] == 3 and docs["value"].mean() == pytest.approx(r["value"], abs=1e-12)
            assert ((docs["chosen"] == docs["gold"]) == (docs["value"] == 1)).all()
        keys.setdefault(metrics["model"], set()).add(tuple(map(tuple, items[["kind", "set", "item"]].to_numpy())))
    assert all(len(k) == 1 for k in keys.values())  # every run of a model: the same windows and documents


def test_seeded_rows_are_the_mean_over_their_seeds(results):
    seeded = results.summary[results.summary["seeds"] > 1]
    assert sorted(set(seeded["method"])) == ["flap", "magnitude-sp", "random"] and set(seeded["ratio"]) == {0.2}
    for _, row in seeded.iterrows():
        runs = results.seeds[(results.seeds["model"] == row["model"]) & (results.seeds["method"] == row["method"])
                             & (results.seeds["ratio"] == row["ratio"])]
        assert sorted(runs["seed"]) == [0, 1] and row["seed"] == 0
        assert row["wikitext2"] == pytest.approx(math.exp(np.log(runs["wikitext2"]).mean()), rel=1e-12)
        assert row["wikitext2_sd"] == pytest.approx(runs["wikitext2"].std(), rel=1e-12)
        assert row["boolq"] == pytest.approx(runs["boolq"].mean())
        assert row["average"] == pytest.approx(runs["average"].mean())
        # the geometric mean is the perplexity of the seed-averaged window NLLs
        nll = [read_items(FIXTURE / "results" / row["model"] / r / "0.2" / "items.csv").query(
            "kind == 'perplexity' and set == 'wikitext2'")["value"].to_numpy() for r in runs["run"]]
        assert math.exp(np.mean(nll)) == pytest.approx(row["wikitext2"], rel=1e-12)


def test_a_bit_identical_checkpoint_reports_the_earlier_evaluation(results):
    """Magnitude pruning ignores the seed: its second seed's checkpoint is the first's, evaluated once."""
    for model in results.models:
        main = json.loads((FIXTURE / "results" / model / "magnitude-sp" / "0.2" / "metrics.json").read_text())
        second = json.loads((FIXTURE / "results" / model / "magnitude-sp@seed1" / "0.2" / "metrics.json").read_text())
        assert second["evaluation"] == {"content_hash": main["evaluation"]["content_hash"],
                                        "evaluated_as": f"results/{model}/magnitude-sp/0.2/metrics.json"}
        assert (second["seed"], second["run"], main["evaluation"]["evaluated_as"]) == (
            1, "magnitude-sp@seed1", f"results/{model}/magnitude-sp/0.2/metrics.json")
        hashes = [json.loads(p.read_text())["evaluation"]["content_hash"]
                  for p in (FIXTURE / "results" / model).glob("*/*/metrics.json")]
        assert hashes.count(main["evaluation"]["content_hash"]) == 2
    note = " ".join(build_table("main", results).notes)
    assert ("Magnitude-sp (L2) (seed 1) at Ratio = 20% w/o tune reports Magnitude-sp (L2) at Ratio = 20% w/o tune"
            in note)


def test_comparisons_are_the_table_differences_with_intervals_around_them(results):
    comp = results.comparisons
    values = results.summary.set_index(["model", "method", "ratio", "tune"])
    assert set(comp["reference"]) == {"dense", "best", "method"} and len(comp) > 200
    # pairs of methods on the headline columns only: 7 methods, 21 pairs per model and ratio
    pairs = comp[comp["reference"] == "method"]
    assert set(pairs["column"]) == {"wikitext2", "average"} and len(pairs) == 2 * 2 * 2 * 21
    for _, c in comp.iterrows():
        mine, theirs = values.loc[(c["model"], c["method"], c["ratio"], c["tune"]), c["column"]], \
            values.loc[(c["model"], c["reference_method"], 0.0 if c["reference"] == "dense" else c["ratio"], "none"),
                       c["column"]]
        expected = math.log(mine / theirs) if c["column"] in ("wikitext2", "ptb") else mine - theirs
        assert c["diff"] == pytest.approx(expected, abs=1e-9)
        assert c["low"] <= c["diff"] + 1e-12 and c["diff"] <= c["high"] + 1e-12
        assert c["items"] == {"wikitext2": 4, "ptb": 4, "average": 21}.get(c["column"], 3)


def test_collate_refuses_rows_evaluated_in_different_dtypes(tmp_path):
    paths = []
    for i, dtype in enumerate(("float32", "bfloat16")):
        metrics = json.loads((FIXTURE / "results" / "tiny-gqa" / "flap" / "0.5" / "metrics.json").read_text())
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(dict(metrics, dtype=dtype)))
    with pytest.raises(ValueError, match=r"different dtypes \['bfloat16', 'float32'\] cannot be compared: "
                                         r"flap/0.5/none: float32, flap/0.5/none: bfloat16"):
        collate(paths)


# --- tables --------------------------------------------------------------------------------------

def test_ranks_mark_the_best_and_what_is_indistinguishable_from_it():
    values = pd.Series([3.0, 1.0, 2.0, math.nan])
    tied = pd.Series([False, False, True, False])
    assert list(_ranks(values, lower_is_better=True, tied=tied)) == [0, 1, 2, 0]
    assert list(_ranks(values, lower_is_better=False, tied=tied)) == [1, 0, 2, 0]
    assert list(_ranks(pd.Series([4.0, 4.0, 5.0]), True, pd.Series([True, False, True]))) == [1, 1, 2]  # equal: best
    assert list(_ranks(pd.Series([5.0, math.nan]), True, pd.Series([True, True]))) == [0, 0]  # nothing to rank


def test_main_table_shows_every_summary_number_with_marks(results):
    table = build_table("main", results)
    assert table.columns[:3] == ["Removed %", "WikiText2↓", "PTB↓"] and table.columns[-1] == "Average"
    groups = dict(table.groups)
    assert list(groups)[0] == "tiny-gqa · Ratio = 0%"
    for _, row in results.summary.iterrows():
        label = f"{row['model']} · {setting_label(row['ratio'], row['tune'])}"
        seeded = row["seeds"] > 1  # the mean over seeds, with their sd instead of the stderr
        cells = dict(groups[label])[method_label(row["method"]) + (" (2 seeds)" if seeded else "")]
        assert (cells[0].text, cells[0].rank) == (f"{100 * row['removed_fraction']:.1f}", 0)  # a fact, never ranked
        assert cells[1].text == f"{row['wikitext2']:.2f}" and cells[1].dagger
        assert cells[1].detail == (f"sd {row['wikitext2_sd']:.2f}" if seeded else "")
        assert cells[3].text == f"{100 * row['boolq']:.2f}"
        assert cells[3].detail == (f"sd {100 * row['boolq_sd']:.1f}" if seeded else f"±{100 * row['boolq_stderr']:.1f}")
    assert "Removed: the real percentage of decoder attention+MLP parameters removed" in " ".join(table.notes)
    for label, rows in table.groups:
        values = [float(cells[1].text) for _, cells in rows]
        best = [float(cells[1].text) for _, cells in rows if cells[1].rank == 1]
        assert best == ([min(values)] * len(best) if len(rows) > 1 else [])


def test_underlines_are_the_rows_whose_paired_interval_to_the_best_includes_zero(results):
    """Every marked cell, and only those, has a 95 % interval against its group's best that includes
    0: underlined, or bold where its value equals the best's; the best row itself has no comparison."""
    comp = results.comparisons.set_index(["model", "method", "ratio", "tune", "column", "reference"])
    table = build_table("main", results)
    columns = results.measured
    labels = {method_label(m) + suffix: m for m in results.summary["method"] for suffix in ("", " (2 seeds)")}
    seen = 0
    for group, rows in table.groups:
        model, setting = group.split(" · ")
        ratio = float(setting.split("= ")[1].split("%")[0]) / 100
        if ratio == 0:
            continue
        for label, cells in rows:
            for column, cell in zip(columns, cells[1:]):
                key = (model, labels[label], ratio, "none", column, "best")
                if cell.rank == 1 and key not in comp.index:
                    continue
                low, high = comp.loc[key, ["low", "high"]]
                assert (cell.rank > 0) == (low <= 0 <= high)
                seen += 1
    assert seen > 50

def test_tuned_rows_form_their_own_groups(results):
    table = build_table("main", with_tuned_copy(results))
    labels = [label for label, _ in table.groups]
    assert labels.index("tiny-gqa · Ratio = 50% w/ tune") == labels.index("tiny-gqa · Ratio = 50% w/o tune") + 1
    assert labels.index("tiny-mha · Ratio = 0%") > labels.index("tiny-gqa · Ratio = 50% w/ tune")


def test_recovered_rows_are_labelled_by_their_recorded_schedule(results):
    """"w/ tune" would claim the papers' recovery: the rows say what the recovery was, read from the
    effective schedule each recovered model records (here 20 steps), in tables, figures and text."""
    tuned = with_tuned_copy(results)
    for key in [k for k in tuned.metrics if k[3] == "lora"]:
        record = copy.deepcopy(tuned.metrics[key])
        record["pruning"]["recovery"] = {"log": {"schedule": {
            "steps": 20, "epochs": 0.02, "batch": 2, "warmup_steps": 1, "eval_every_steps": 2, "lr": 1e-4,
            "weight_decay": 0.0, "max_grad_norm": 1.0}}}
        tuned.metrics[key] = record
    assert tuned.recovery_label == "w/ LoRA, 20 steps"
    assert with_tuned_copy(results).recovery_label == "w/ tune"  # recorded before the schedule was
    labels = [label for label, _ in build_table("main", tuned).groups]
    assert "tiny-gqa · Ratio = 50% w/ LoRA, 20 steps" in labels and not [g for g in labels if "w/ tune" in g]
    legend = build_figure("perplexity", tuned).legends[0]
    assert "FLAP w/ LoRA, 20 steps" in [t.get_text() for t in legend.get_texts()]
    text = " ".join(what_we_see(tuned))
    assert "At Ratio = 50% w/ LoRA, 20 steps, " in text and "w/ tune" not in text
    assert recovery_notes(tuned)[0].startswith("Recovery (w/ LoRA, 20 steps): LoRA r=")


def test_flap_layouts(results):
    ppl = build_table("flap_wikitext2", results)
    assert ppl.columns == ["tiny-gqa↓", "tiny-mha↓"]
    assert [label for label, _ in ppl.groups] == ["Ratio = 0%", "Ratio = 20% w/o tune", "Ratio = 50% w/o tune"]
    dense = results.dense("tiny-mha")
    assert dict(ppl.groups[0][1])["Dense"][1].text == f"{dense['wikitext2']:.2f}"
    zeroshot = build_table("flap_zeroshot", results)
    assert zeroshot.columns == ["BoolQ", "PIQA", "HellaSwag", "WinoGrande", "ARC-e", "ARC-c", "OBQA", "Average"]


def test_efficiency_table_relates_measurements_to_dense_and_ideal(results):
    table = build_table("efficiency", results)
    eff = results.efficiency.set_index(["model", "method", "ratio"])
    names = {method_label(m): m for m in results.efficiency["method"]}
    first_prefill = table.columns.index("Prefill b1 (tok/s)")
    for label, rows in table.groups:
        model = label.split(" · ")[0]
        ratio = float(label.split("= ")[1].rstrip("%")) / 100
        for method, cells in rows:
            row = eff.loc[(model, names[method], ratio)]
            share = row["prefill_b1_speedup"] / row["ideal_speedup"]
            interval = f"[{row['prefill_b1_speedup_low']:.2f}–{row['prefill_b1_speedup_high']:.2f}]"
            dense_rate = f"{row['prefill_b1_tokens_per_s_dense']:,.0f}"  # the dense model in the same process
            assert cells[first_prefill].detail == (f"(dense {dense_rate}; {row['prefill_b1_speedup']:.2f}× {interval}, "
                                                   f"{share:.0%} of ideal)")
            assert cells[0].detail == f"({row['params_ratio']:.2f}× dense)"
    notes = " ".join(table.notes)
    # the fixture's benchmark config, and the repeats its pairs took
    assert "3 to 8 paired repeats" in notes and "decode: 16 greedy steps" in notes
    assert f"here {results.efficiency['repeats'].min()}–8" in notes
    assert "95% percentile bootstrap interval" in notes
    # processes differ in speed: the note gives the dense model's own range over the pairs
    rates = results.efficiency["prefill_b1_tokens_per_s_dense"]
    assert f"ran at {rates.min():,.0f}–{rates.max():,.0f} tok/s across the pairs" in notes


def test_pareto_front_by_hand():
    speed, loss = [1.0, 1.2, 1.1, 1.5, 1.4, 1.5], [10, 12, 13, 20, 25, 20]
    # (1.1, 13) is beaten by (1.2, 12), (1.4, 25) by (1.5, 20); the two equal points beat neither
    assert pareto_front(speed, loss).tolist() == [True, True, False, True, False, True]


def _dominated(rows: pd.DataFrame, i, speed: str, quality: str) -> bool:
    r = rows.loc[i]
    better = (rows[speed] >= r[speed]) & (rows[quality] <= r[quality])
    return bool((better & ((rows[speed] > r[speed]) | (rows[quality] < r[quality]))).any())


def test_tradeoff_table_marks_the_pareto_front_of_each_speedup(results):
    table = build_table("tradeoff", results)
    assert table.columns == ["WikiText2↓", "Decode speedup", "Prefill, batch 1 speedup"]
    assert [label for label, _ in table.groups] == ["tiny-gqa · w/o tune", "tiny-mha · w/o tune"]
    for (label, rows), model in zip(table.groups, results.models):
        frame = quality_speed(results, model)
        assert len(rows) == len(frame) and rows[0][0] == "Dense"  # the dense model: fastest or not, it is 1x
        assert rows[0][1][1].text == "1.00×" and rows[0][1][0].text == f"{results.dense(model)['wikitext2']:.2f}"
        labels = [f"{method_label(m)}{'' if m == 'dense' else f' @ {r:g}'}" for m, r in zip(frame["method"],
                                                                                         frame["ratio"])]
        for text, cells in rows:
            i = labels.index(text)
            for cell, speed in zip(cells[1:], ("decode_speedup", "prefill_b1_speedup")):
                assert (cell.rank == 1) == (not _dominated(frame, i, speed, "wikitext2"))
                assert cell.detail == f"[{frame.loc[i, speed + '_low']:.2f}–{frame.loc[i, speed + '_high']:.2f}]"
        decode = [float(cells[1].text.rstrip("×")) for _, cells in rows[1:]]
        assert decode == sorted(decode, reverse=True)  # fastest first after the dense model
    assert "Pareto front" in " ".join(table.notes)


def test_tradeoff_table_has_a_group_per_tune_setting(results):
    table = build_table("tradeoff", with_tuned_copy(results))
    assert [label for label, _ in table.groups] == [f"{m} · {s}" for m in results.models
                                                    for s in ("w/o tune", "w/ tune")]
    for (_, plain), (_, tuned) in zip(table.groups[::2], table.groups[1::2]):
        # the same models at the same speeds; the tuned copy's perplexity is half (the dense model's is its own)
        assert [label for label, _ in plain] == [label for label, _ in tuned]
        for (label, p), (_, t) in zip(plain, tuned):
            assert float(t[0].text) == pytest.approx(float(p[0].text) / (1 if label == "Dense" else 2), abs=0.01)


def test_tradeoff_figure_draws_every_model_and_the_front(results):
    fig = build_figure("tradeoff", results)
    axes = fig.axes
    assert len(axes) == 2 * 2  # two models x (decode, prefill batch 1)
    frame = quality_speed(results, "tiny-gqa")
    front = frame[frame["decode_front"]].sort_values("decode_speedup")
    step = next(line for line in axes[0].get_lines() if line.get_label() == "Pareto front")
    assert list(step.get_xdata()) == list(front["decode_speedup"])
    assert list(step.get_ydata()) == list(front["wikitext2"])


def with_full_dense(results: Results) -> Results:
    """The fixture with its dense models' perplexity also measured on the full test sets and BoolQ
    on all its documents (the `full_for_dense` switches), built as the evaluation writes it: the
    subsample plus "full"."""
    metrics = copy.deepcopy(results.metrics)
    rows = []
    for _, row in results.summary.iterrows():
        m = metrics[(row["model"], row["method"], float(row["ratio"]), row["tune"])]
        if row["method"] == "dense":
            for name, r in m["perplexity"].items():
                r["full"] = dict(r, ppl=2 * r["ppl"], windows=r["windows_total"])
            m["zeroshot"]["boolq"]["full"] = {"value": 0.6, "stderr": 0.0086, "docs": 3270}
        rows.append(summary_row(m))
    summary = pd.DataFrame(rows).merge(results.summary[[c for c in results.summary if c.endswith("_subsampled")]
                                                      + ["model", "method", "ratio", "tune", "average_stderr"]])
    return Results(order_rows(summary), results.efficiency, metrics, results.config)


def test_dense_table_shows_the_full_test_sets_beside_the_subsample(results):
    full = with_full_dense(results)
    dense = full.dense("tiny-gqa")
    assert dense["wikitext2_full"] == pytest.approx(2 * dense["wikitext2"])
    assert full.summary.loc[full.summary["method"] != "dense", "wikitext2_full"].isna().all()
    md = markdown(build_table("dense", full))
    row = next(line for line in md.splitlines() if "| tiny-gqa |" in line)
    assert f"| {dense['wikitext2_full']:.2f} | {dense['wikitext2']:.2f}{DAGGER} | {dense['ptb_full']:.2f} |" in row
    # BoolQ on all 3270 documents beside the fixture's 3; PIQA only on its subsample
    assert f"| 60.00 ±0.9 | {100 * dense['boolq']:.2f}{DAGGER}" in row and "BoolQ full | BoolQ subsample | PIQA |" in md
    assert "full: all 4765 windows; subsample: 4 evenly spaced windows" in md
    assert "## The dense model under the papers' protocol" in readme(full, {"main": "M", "dense": md}, [])


def test_protocol_is_stated_under_each_table(results):
    notes = " ".join(build_table("main", results).notes)
    assert "4 of 4765 windows" in notes  # the fixture's max_windows against WikiText-2's windows at seqlen 64
    assert "HellaSwag acc_norm (3 of 10042 documents†; chance 25 %)" in notes and "BOS token not added" in notes
    assert "FLAP: C4-en train, first 1000 documents of shard 00000, 8x32 tokens, seed 0; paper: WIFV" in notes
    assert "Random: no calibration data" in notes
    assert "wikitext2/wiki.test.raw 173c87a53759" in notes


def test_recovery_note_states_the_effective_schedule(results):
    tuned = with_tuned_copy(results)
    schedule = {"steps": 57, "epochs": 2.027, "batch": 64, "warmup_steps": 4, "eval_every_steps": 4, "lr": 0.0001,
                "weight_decay": 0, "max_grad_norm": 1.0}
    for key, m in tuned.metrics.items():
        if key[3] == "lora":
            m["pruning"] = dict(m["pruning"], recovery={"log": {"schedule": schedule}})
    notes = " ".join(build_table("main", tuned).notes)
    assert ("57 optimizer steps (2.027 epochs) of batch 64, warm-up 4 steps, validation every 4 steps and the best "
            "trained adapters kept, lr 0.0001, weight decay 0, gradient clipping 1.0") in notes


def test_calibration_note_names_the_corpus_a_substitute_stands_in_for(results):
    metrics = copy.deepcopy(results.metrics)
    for (model, method, _, _), m in metrics.items():
        if method == "flap":
            m["pruning"]["calibration"]["substitutes"] = "WikiText-2 train 1024x128"
    note = calibration_notes(Results(results.summary, results.efficiency, metrics, results.config))[0]
    assert "8x32 tokens, seed 0 (stands in for WikiText-2 train 1024x128); paper:" in note


def test_reference_numbers_are_quoted_with_their_sources():
    ref = yaml.safe_load(REFERENCE.read_text())
    for row in ref["rows"]:
        assert row["source"] in ref["sources"]
        for key, value in row.items():
            if key in {"wikitext2", "ptb"}:
                assert value > 1
            elif key not in {"source", "ratio", "tune", "label"}:
                assert 0 < value < 100
    table = build_table("reference", results=None)
    md = markdown(table)
    assert "quoted, not reproduced" in md
    for anchor in ("| LLaMA-7B [a] | 12.62 | 22.14 |", "| LLM-Pruner Element¹ [a] | 19.09 |",
                   "| LLM-Pruner L2 (block-wise) [a] | 582.41 |", "| LLM-Pruner Random (block-wise) [a] | 27.51 |",
                   "| LLM-Pruner Element² [a] | 17.37 |", "| FLAP [b,c] | 14.62 |", "| Wanda-sp [b,c] | 22.12 |"):
        assert anchor in md
    assert all(s["url"] in md for s in ref["sources"].values())
    assert "issue #23" in md and "#52" in md and "Both papers' PTB is the validation split" in md


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1


@pytest.mark.parametrize("name", table_names(["wikitext2", "ptb"], zeroshot=True, efficiency=True, dense_full=True,
                                             seeds=True, models=2))
def test_every_table_renders_in_every_format(results, name):
    table = build_table(name, with_full_dense(results) if name == "dense" else results)
    n_rows = sum(len(rows) for _, rows in table.groups)
    n_best = sum(c.rank == 1 for _, rows in table.groups for _, cells in rows for c in cells)
    md, tex, page = (render(table, fmt) for fmt in ("md", "tex", "html"))
    assert md.count("\n| ") == n_rows + 1 and md.count("**") == 2 * n_best + 2  # + the bold title
    assert tex.count(r"\multirow") == len(table.groups) and tex.count(r"\textbf") == n_best
    assert tex.isascii() and "%" not in tex.replace(r"\%", "")  # plain pdflatex; every % escaped
    parser = _Collect()
    parser.feed(page)
    assert parser.tags["table"] == 1 and parser.tags["tr"] == n_rows + 1 and parser.tags.get("strong", 0) == n_best
    for text in (md, tex, page):
        assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_markdown_cell_marks():
    from prunebench.reporting.tables import _md_cell

    assert _md_cell(Cell("1.00", "±0.5", True, 1)) == f"**1.00**{DAGGER} ±0.5"
    assert _md_cell(Cell("2.00", "", False, 2)) == "<ins>2.00</ins>"


# --- narrative and README ------------------------------------------------------------------------

def label_of(row) -> str:
    return method_label(row["method"]) + (" (2 seeds)" if row["seeds"] > 1 else "")


def test_what_we_see_ranks_only_where_the_paired_intervals_support_it(results):
    paragraphs = what_we_see(results)
    assert len(paragraphs) == 4 and paragraphs[-1].startswith(DAGGER)
    # both models ran the same 7 methods at both ratios: 2 x 21 pairs of methods, each on both models
    assert paragraphs[2].startswith("**Across models (tiny-gqa and tiny-mha).** On WikiText-2 perplexity, the "
                                    "paired 95 % intervals order ")
    assert " of 42 pairs of methods (compared at the same setting)" in paragraphs[2]
    comp = results.comparisons
    for model, text in zip(results.models, paragraphs):
        rows = results.summary[(results.summary["model"] == model) & (results.summary["method"] != "dense")]
        for (ratio, tune), group in rows.groupby(["ratio", "tune"]):
            best = group.loc[group["wikitext2"].idxmin()]
            assert (f"At {setting_label(ratio, tune)}, {label_of(best)} has the lowest WikiText-2 perplexity "
                    f"({best['wikitext2']:.2f}{DAGGER}") in text
            versus = comp[(comp["model"] == model) & (comp["ratio"] == ratio) & (comp["column"] == "wikitext2")
                          & (comp["reference"] == "best")].merge(group, on=["model", "method", "ratio", "tune"])
            tied = [label_of(r) for _, r in versus.iterrows() if r["low"] <= 0 <= r["high"]]
            if tied and len(tied) < len(versus):
                assert f"indistinguishable from {', '.join(tied[:-1])}" in text and tied[-1] in text
            elif tied:
                assert "statistically indistinguishable from every other method" in text
            else:
                assert "lower than every other method's by paired 95 % intervals" in text
        assert "no recovered (w/ tune) models" in text
        assert "FLAP (2 seeds) at 0.2 keeps" not in text and "FLAP at 0.2 keeps" in text  # adaptive structure
        eff = results.efficiency[(results.efficiency["model"] == model) & (results.efficiency["method"] != "dense")]
        share = eff["prefill_b1_speedup"] / eff["ideal_speedup"]
        assert f"Measured speedups reach {share.min():.0%}–{share.max():.0%} (prefill, batch 1)" in text
        # which method gives the best perplexity at each real speedup: the front, slowest first
        frame = quality_speed(results, model)
        front = frame[frame["decode_front"]].sort_values("decode_speedup")
        segment = text.split("decode, w/o tune: ")[1].split(";")[0]
        assert [part.rsplit(" (", 1)[0] for part in segment.split(" → ")] == [
            method_label(m) + ("" if m == "dense" else f" at {r:g}") for m, r in zip(front["method"], front["ratio"])]


def with_comparisons(results: Results, rows: list[tuple]) -> Results:
    """`results` with hand-made comparisons (model, method, ratio, tune, column, reference,
    reference_method, diff, low, high)."""
    comp = pd.DataFrame(rows, columns=["model", "method", "ratio", "tune", "column", "reference", "reference_method",
                                       "diff", "low", "high"])
    return Results(results.summary, results.efficiency, results.metrics, results.config, results.seeds, comp)


def test_leader_sentence_names_whom_the_intervals_separate(results):
    group = untuned(results)[(untuned(results)["model"] == "tiny-mha") & (untuned(results)["ratio"] == 0.5)]
    best = group.loc[group["wikitext2"].idxmin()]
    others = [r for _, r in group.iterrows() if r["method"] != best["method"]]
    best_of = ("wikitext2", "best", best["method"])
    rows = [("tiny-mha", others[0]["method"], 0.5, "none", *best_of, 0.15, 0.1, 0.2)]  # excludes 0
    rows += [("tiny-mha", r["method"], 0.5, "none", *best_of, 0.05, -0.1, 0.2) for r in others[1:]]
    text = " ".join(what_we_see(with_comparisons(results, rows)))
    tied = [method_label(r["method"]) for r in others[1:]]
    assert (f"{method_label(best['method'])} has the lowest WikiText-2 perplexity ({best['wikitext2']:.2f}{DAGGER}; "
            f"dense {results.dense('tiny-mha')['wikitext2']:.2f}{DAGGER}), lower than "
            f"{method_label(others[0]['method'])}'s by paired 95 % intervals and indistinguishable from "
            f"{', '.join(tied[:-1])} and {tied[-1]}") in text


def test_recovery_sentence_counts_what_the_intervals_support(results):
    tuned = with_tuned_copy(results)
    rows = []
    for i, (_, r) in enumerate(tuned.summary[tuned.summary["tune"] == "lora"].iterrows()):
        key = (r["model"], r["method"], float(r["ratio"]), "lora")
        rows.append((*key, "wikitext2", "untuned", r["method"], math.log(0.5), math.log(0.45), math.log(0.55)))
        rows.append((*key, "average", "untuned", r["method"], 0.1, 0.05 if i % 2 else -0.02, 0.15))
    text = " ".join(what_we_see(with_comparisons(tuned, rows)))
    n = len(rows) // 2 // len(tuned.models)  # each model's recovered rows; every second one's Average excludes 0
    assert ("By paired 95 % intervals against the same method without recovery, LoRA recovery lowered WikiText-2 "
            f"perplexity for {n} of {n} pruned models, raised it for 0 and left 0 indistinguishable (median change "
            f"-50%); it raised the zero-shot average for {n // 2} of {n}, lowered it for 0 and left {n - n // 2} "
            "indistinguishable (median +10.00 points)") in text


def test_seed_sentence_sets_calibration_spread_against_evaluation_noise(results):
    text = what_we_see(results)[0]
    seeds = results.seeds[(results.seeds["model"] == "tiny-gqa") & (results.seeds["method"] == "flap")]
    spread, noise = seeds["wikitext2"].std(ddof=1), seeds["wikitext2_stderr"].mean()
    larger = "calibration spread" if spread > noise else "evaluation noise"
    assert (f"FLAP at Ratio = 20% w/o tune over 2 seeds: WikiText-2 perplexity sd {spread:.2f} against a stderr of "
            f"{noise:.2f} ({larger} larger)") in text
    assert "Magnitude-sp (L2) at Ratio = 20% w/o tune over 2 seeds: WikiText-2 perplexity sd 0.00" in text


def test_readme_embeds_main_table_and_links_figures(results, tmp_path):
    tables = {name: render(build_table(name, results), "md") for name in ("main", "efficiency", "reference")}
    figures = figure_names(results.models, True, True, True, True)
    text = readme(results, tables, figures)
    assert text.startswith("# PruneBench results") and "do not edit by hand" in text
    assert tables["main"] in text and tables["reference"] in text
    assert all(f"(figures/{stem}.svg)" in text for stem in figures)
    assert "## What we see" in text and what_we_see(results)[0] in text


# --- figures -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", figure_names(["tiny-gqa", "tiny-mha"], True, True, True, True))
def test_figures_save_as_valid_png_and_svg(results, name, tmp_path):
    from PIL import Image

    png, svg = save(build_figure(name, results), tmp_path / name)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something is drawn
    assert ET.parse(svg).getroot().tag.endswith("svg")


@pytest.mark.parametrize("models", [["tiny-gqa"], ["tiny-gqa", "tiny-mha"]])
@pytest.mark.parametrize("name", ["perplexity", "zeroshot", "speedup", "tradeoff"])
def test_every_legend_fits_in_the_saved_figure(results, name, models, tmp_path):
    """The saved image is the figure's box: every legend's extent, after the layout, lies inside it
    (a one-model zero-shot figure is 4.2 inches wide, four labels side by side are not)."""
    subset = copy.copy(results)
    subset.summary = results.summary[results.summary["model"].isin(models)]
    fig = build_figure(name, subset)
    fig.canvas.draw()
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    box = fig.bbox
    for legend in legends:
        extent = legend.get_window_extent()
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1, \
            (name, models, extent, box)


@pytest.mark.parametrize("name", ["perplexity", "zeroshot"])
def test_a_method_only_the_second_model_ran_is_in_the_legend(results, name):
    """Gemma-3-270M runs fewer methods than SmolLM2 (config/models.yaml): the legend names every
    panel's methods, whichever model comes first."""
    subset = copy.copy(results)
    summary = results.summary
    subset.summary = summary[(summary["model"] == "tiny-mha") | (summary["method"] != "flap")]
    fig = build_figure(name, subset)
    fig.canvas.draw()
    (legend,) = fig.legends
    assert "FLAP" in [t.get_text() for t in legend.get_texts()]
    assert legend.get_window_extent().x1 <= fig.bbox.x1


def test_zeroshot_figure_marks_every_calibration_seed(results):
    from matplotlib.collections import PathCollection

    fig = build_figure("zeroshot", results)
    for ax, model in zip(fig.axes, results.models):
        hollow = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_facecolors()) == 0]
        shown = np.concatenate([c.get_offsets()[:, 1] for c in hollow])
        seeds = results.seeds[results.seeds["model"] == model]
        assert sorted(shown) == pytest.approx(sorted(100 * seeds["average"]))


def test_paired_and_seeds_tables(results):
    paired = build_table("paired", results)
    assert paired.columns == ["WikiText2↓ vs dense", "WikiText2↓ vs best", "PTB↓ vs dense", "PTB↓ vs best",
                              "Average vs dense", "Average vs best"]
    comp = results.comparisons.set_index(["model", "method", "ratio", "tune", "column", "reference"])
    cells = dict(dict(paired.groups)["tiny-gqa · Ratio = 50% w/o tune"])["Wanda-sp"]
    diff, low, high = comp.loc[("tiny-gqa", "wanda-sp", 0.5, "none", "wikitext2", "dense"), ["diff", "low", "high"]]
    assert cells[0].text == f"×{math.exp(diff):.2f}"
    assert cells[0].detail == f"[{math.exp(low):.2f}, {math.exp(high):.2f}]"
    diff, low, high = comp.loc[("tiny-gqa", "wanda-sp", 0.5, "none", "average", "dense"), ["diff", "low", "high"]]
    assert (cells[4].text, cells[4].detail) == (f"{100 * diff:+.2f}", f"[{100 * low:+.1f}, {100 * high:+.1f}]")
    assert sum(c.text == "best" for _, rows in paired.groups for _, cs in rows for c in cs) >= 3 * len(paired.groups)
    seeds = build_table("seeds", results)
    rows = dict(dict(seeds.groups)["tiny-gqa · Ratio = 20% w/o tune"])
    runs = results.seeds[(results.seeds["model"] == "tiny-gqa") & (results.seeds["method"] == "flap")]
    per_seed = runs.sort_values("seed")["wikitext2"]
    assert [rows[f"FLAP · seed {s}"][0].text for s in (0, 1)] == [f"{v:.2f}" for v in per_seed]
    assert rows["FLAP · sd over seeds"][0].text == f"{runs['wikitext2'].std():.2f}"


def test_figures_are_reproducible(results, tmp_path):
    first = save(build_figure("perplexity", results), tmp_path / "a")
    second = save(build_figure("perplexity", results), tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_structure_figure_shows_every_pruned_model_per_layer(results):
    fig = build_figure("structure_tiny-gqa", results)
    heads, channels = (ax.images[0].get_array() for ax in fig.axes[:2])
    pruned = results.summary[(results.summary["model"] == "tiny-gqa") & (results.summary["method"] != "dense")]
    assert heads.shape == channels.shape == (len(pruned), 4)  # 4 layers
    flap = results.metrics[("tiny-gqa", "flap", 0.5, "none")]["pruning"]["structure"]
    row = [f"{method_label(m)} @ {r:g}" for m, r in zip(pruned["method"], pruned["ratio"])].index("FLAP @ 0.5")
    assert list(channels[row]) == flap["kept_channels"] and list(heads[row]) == flap["kept_heads"]


def test_cost_table_reads_pruning_and_recovery_records(results):
    tuned = with_tuned_copy(results)
    key = ("tiny-gqa", "flap", 0.5, "none")
    record = results.metrics[key]["pruning"]
    md = markdown(build_table("cost", tuned))
    lines = md.splitlines()
    group = lines.index(next(line for line in lines if line.startswith("| tiny-gqa · Ratio = 50% |")))
    flap = next(line for line in lines[group:] if "| FLAP |" in line)
    assert f"| FLAP | {record['wall_s']['prune']:.1f} | {record['peak_memory_mb']:,.0f} | – | – |" in flap
    assert md.count("| tiny-gqa · Ratio = 50% |") == 1 and "w/o tune" not in md
    # the only paper-scale estimate the fixture's prune jobs recorded: LLM-Pruner Element1's
    # LLaMA-7B in float64 (the default precision): weights 2 x 26.95 GB, the activations 2 x 8.2 GB
    assert "LLM-Pruner Element¹: 72 GB in float64 (weights 53.9, Fisher 0.0, activations for backward 16.5)" in md
    assert "FLAP:" not in md.split("on LLaMA-7B")[1]


def test_cost_table_quotes_the_paper_scale_memory_a_prune_job_recorded(results):
    from methods.llm_pruner import paper_scale_memory

    key = ("tiny-gqa", "flap", 0.5, "none")
    record = copy.deepcopy(results.metrics[key])
    record["pruning"]["details"]["memory_at_paper_scale"] = paper_scale_memory("element2", "float32")
    md = render(build_table("cost", Results(results.summary, results.efficiency, {**results.metrics, key: record},
                                            results.config)), "md")
    # LLaMA-7B in float32: 32 layers of 202,375,168 parameters and 2 embeddings of 32000x4096, 4 bytes
    # each: 26.95 GB; the Fisher of the 26 pruned layers 21.05 GB; the activations ~8.2 GB.
    assert "on LLaMA-7B" in md
    assert "FLAP: 57 GB in float32 (weights 27.0, Fisher 21.0, activations for backward 8.2)" in md


def test_rule_budget_sums_the_benchmark_files_per_rule(tmp_path):
    from prunebench.reporting.budget import rule_budget

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for path, wall, rss, cpu in (("evaluate/m/a/0.2.tsv", 60, 900, 120), ("evaluate/m/b/0.5.tsv", 30, 1100, 60),
                                 ("prune/m/a/0.2.tsv", 12, 700, 6)):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(header + f"{wall}\t0:00:{wall}\t{rss}\t0\t0\t0\t0\t0\t50\t{cpu}\n")
    table = rule_budget(tmp_path)
    assert list(table.index) == ["evaluate", "prune", "total"]
    assert table.loc["evaluate"].tolist() == [2, 3.0, 1.5, 1100] and table.loc["prune"].tolist() == [1, 0.1, 0.2, 700]
    assert table.loc["total"].tolist() == [3, 3.1, 1.7, 1100]


def test_earlier_results_merge_only_what_this_config_does_not_produce_under_its_evaluation(tmp_path):
    from prunebench.reporting.results import earlier_results

    evaluation = {"dtype": "bfloat16", "perplexity": {"max_windows": 64, "full_for_dense": False},
                  "zeroshot": {"limit": 96, "full_for_dense": False}}
    dense_full = {**evaluation, "perplexity": {"max_windows": 64, "full_for_dense": True},  # dense-only: merges
                  "zeroshot": {"limit": 96, "full_for_dense": True}}
    runs = {"results/m/dense/0": evaluation, "results/m/flap/0.2": evaluation,
            "results/m/shortgpt/0.2": evaluation, "results/m/shortgpt/0.2/lora": dense_full,
            "results/m/wide/0.2": {**evaluation, "perplexity": {"max_windows": 128, "full_for_dense": False}},
            "results/m/old/0.2": {**evaluation, "dtype": "float32"}, "results/other/flap/0.2": evaluation}
    for run, settings in runs.items():
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "metrics.json").write_text(json.dumps({"provenance": {"config": {"evaluation": settings}}}))
    tracked = ["results/m/dense/0/metrics.json", "results/m/flap/0.2/metrics.json"]
    assert earlier_results(tracked, ["m"], evaluation, tmp_path) == [
        "results/m/shortgpt/0.2/metrics.json", "results/m/shortgpt/0.2/lora/metrics.json"]


def test_a_multi_seed_rows_claim_needs_every_seeds_own_interval():
    """Two calibration seeds 0.2 and 0.0 nats better than dense per window (plus noise): their mean
    (0.1) alone would be a clear claim; seed 1's own interval includes zero, so the row's interval
    does too. With seeds 0.2 and 0.1 better, every seed supports it and the claim stands."""
    from prunebench.reporting.comparisons import compare

    rng = np.random.default_rng(0)
    index = pd.MultiIndex.from_arrays([["perplexity"] * 200, ["wikitext2"] * 200, range(200)],
                                      names=["kind", "set", "item"])
    dense = pd.Series(rng.normal(3.0, 0.5, 200), index=index)

    def intervals(gains):
        runs = pd.DataFrame({("m", "dense", 0.0, "none", 0): dense,
                             **{("m", "flap", 0.2, "none", i): dense - g + rng.normal(0, 0.01, 200)
                                for i, g in enumerate(gains)}})
        summary = pd.DataFrame({"model": ["m", "m"], "method": ["dense", "flap"], "ratio": [0.0, 0.2],
                                "tune": ["none", "none"], "wikitext2": [20.0, 18.0]})
        row = compare(summary, runs, ["wikitext2"]).query("reference == 'dense'").iloc[0]
        return row["diff"], row["low"], row["high"]

    diff, low, high = intervals([0.2, 0.0])
    assert diff == pytest.approx(-0.1, abs=0.005) and low < -0.19 and high > 0  # seed 1 gains nothing
    diff, low, high = intervals([0.2, 0.1])
    assert diff == pytest.approx(-0.15, abs=0.005) and low < -0.19 and -0.11 < high < 0


def test_tasks_the_dense_model_scores_at_chance_are_named_as_unable_to_rank():
    """BoolQ 52 ± 5 % holds 50 % within 1.96 stderr; ARC-c 31 ± 2.9 % does not hold 25.02 % (6.0
    points > 5.7); PIQA 64 ± 3 % is far from 50 %."""
    from prunebench.reporting.narrative import _chance_sentence

    dense = pd.Series({"boolq": 0.52, "boolq_stderr": 0.05, "arc_c": 0.31, "arc_c_stderr": 0.029,
                       "piqa": 0.64, "piqa_stderr": 0.03})
    assert _chance_sentence(dense) == ("The dense model's BoolQ (52.0 ± 5.0 %, chance 50 %) is within the 95 % "
                                       "interval of guessing: that task cannot rank methods for this model.")
    assert _chance_sentence(dense.drop(["boolq", "boolq_stderr"])) == ""
    assert "ARC-c" in _chance_sentence(dense.replace({0.029: 0.031}))


# --- the recovery curve --------------------------------------------------------------------------

# Mean NLL per window above a shared base, per (method, LoRA steps): FLAP gains 0.2 then 0.1 nats and
# is flat from 60 to 250 steps; Element¹ starts 0.3 nats behind FLAP and leads it from 20 steps on.
CURVE_NLL = {("flap", 0): 0.5, ("flap", 20): 0.3, ("flap", 60): 0.2, ("flap", 250): 0.2,
             ("llm-pruner-element1", 0): 0.8, ("llm-pruner-element1", 20): 0.25,
             ("llm-pruner-element1", 60): 0.1, ("llm-pruner-element1", 250): 0.0}


def curve_results() -> Results:
    """Hand-made curve results on 200 windows (independent noise of 0.01 nats per run): the summary
    (dense, both methods w/o tune and after the default 20 steps), the curve points (60, 250), their
    metrics (the fixture's FLAP record with each point's recorded schedule) and `compare`'s intervals."""
    from prunebench.reporting.comparisons import compare

    rng = np.random.default_rng(0)
    index = pd.MultiIndex.from_arrays([["perplexity"] * 200, ["wikitext2"] * 200, range(200)],
                                      names=["kind", "set", "item"])
    base = rng.normal(3.0, 0.5, 200)
    record = json.loads((FIXTURE / "results" / "tiny-gqa" / "flap" / "0.2" / "metrics.json").read_text())
    rows, runs, metrics = [], {("m", "dense", 0.0, "none", 0): pd.Series(base, index=index)}, {}
    rows.append({"model": "m", "method": "dense", "ratio": 0.0, "tune": "none", "recovery_steps": 0,
                 "wikitext2": math.exp(base.mean()), "seeds": 1})
    for (method, steps), gap in CURVE_NLL.items():
        tune = "none" if steps == 0 else "lora" if steps == 20 else f"lora-{steps}"
        nll = base + gap + rng.normal(0, 0.01, 200)
        runs[("m", method, 0.2, tune, len(runs))] = pd.Series(nll, index=index)
        rows.append({"model": "m", "method": method, "ratio": 0.2, "tune": tune, "recovery_steps": steps,
                     "wikitext2": math.exp(nll.mean()), "wikitext2_stderr": 0.1, "seeds": 1})
        schedule = {"steps": steps, "epochs": steps * 2 / 1984, "batch": 2, "warmup_steps": steps // 10,
                    "eval_every_steps": steps // 2, "lr": 6e-4, "weight_decay": 0, "max_grad_norm": 1.0}
        recovery = {"log": {"schedule": schedule, "best_step": steps}} if steps else None
        metrics[("m", method, 0.2, tune)] = dict(record, model="m", method=method, tune=tune,
                                                 pruning=dict(record["pruning"], recovery=recovery))
    summary = pd.DataFrame(rows)
    comparisons = compare(summary, pd.DataFrame(runs), ["wikitext2"])
    on_curve = summary["tune"].str.startswith("lora-")
    return Results(order_rows(summary[~on_curve]), pd.DataFrame(), metrics, {}, pd.DataFrame(), comparisons,
                   curve=summary[on_curve].reset_index(drop=True))


def test_each_curve_point_is_compared_with_the_point_before_it():
    comp = curve_results().comparisons.set_index(["method", "tune", "reference"])
    previous = comp.xs("previous", level="reference")
    # the default recovery's point before it is the pruned model (the "untuned" reference): no "previous"
    assert set(previous.index) == {(m, t) for m in ("flap", "llm-pruner-element1") for t in ("lora-60", "lora-250")}
    assert previous.loc[("flap", "lora-60"), "reference_tune"] == "lora"
    assert previous.loc[("flap", "lora-250"), "reference_tune"] == "lora-60"
    assert previous.loc[("flap", "lora-60"), "diff"] == pytest.approx(-0.1, abs=0.005)
    flat = previous.loc[("flap", "lora-250")]
    assert flat["diff"] == pytest.approx(0.0, abs=0.005) and flat["low"] < 0 < flat["high"]
    step = previous.loc[("llm-pruner-element1", "lora-250")]
    assert step["diff"] == pytest.approx(-0.1, abs=0.005) and step["high"] < 0
    # at each curve point the two methods are compared with each other (the group's best)
    best = comp.xs("best", level="reference")
    assert best.loc[("flap", "lora-250"), "reference_method"] == "llm-pruner-element1"
    assert best.loc[("flap", "lora-250"), "diff"] == pytest.approx(0.2, abs=0.005)


def test_curve_rows_stay_out_of_the_main_tables_and_form_the_recovery_table():
    results = curve_results()
    assert set(results.summary["tune"]) == {"none", "lora"}
    curves = results.recovery_curves
    assert [(m, s) for m, s in zip(curves["method"], curves["recovery_steps"])] == [
        (m, s) for m in ("llm-pruner-element1", "flap") for s in (0, 20, 60, 250)]  # report order, by steps
    table = build_table("recovery", results)
    assert table.columns == ["LoRA steps", "Epochs", "Kept step", "WikiText2↓", "WikiText2↓ vs previous"]
    (group, body), = table.groups
    assert group == "Ratio = 20%"
    flap = [cells for label, cells in body if label == "FLAP"]
    assert [c[0].text for c in flap] == ["0", "20", "60", "250"]
    assert flap[0][4].text == "–"  # the pruned model has no point before it
    assert flap[1][4].text == f"×{math.exp(-0.2):.2f}"  # 20 steps against w/o tune
    assert flap[2][4].text == f"×{math.exp(-0.1):.2f}" and flap[3][4].text == "×1.00"
    assert flap[3][1].text == f"{250 * 2 / 1984:.3g}" and flap[3][2].text == "250"
    assert "250 steps: warm-up 25, validation every 125" in table.notes[0]
    for fmt in ("md", "tex", "html"):
        assert "What recovery buys" in render(table, fmt)


def test_curve_narrative_says_where_it_flattens_and_whether_the_lead_changes():
    from prunebench.reporting.narrative import _curve_sentences

    sentence, = _curve_sentences(curve_results(), "m")
    flap = sentence.split("FLAP goes ")[1]
    assert "flat from 60 to 250 steps" in flap
    element = sentence.split("LLM-Pruner Element¹ goes ")[1].split(";")[0]
    assert "changing at every step of the curve by its paired interval, up to 250 steps" in element
    assert ("(0 steps: FLAP; 20 steps: LLM-Pruner Element¹; 60 steps: LLM-Pruner Element¹; 250 steps: "
            "LLM-Pruner Element¹): the lead changes between points where the intervals support it") in sentence


def test_recovery_figure_draws_a_line_per_method_and_ratio(tmp_path):
    from prunebench.reporting.plots import recovery_figure

    fig = recovery_figure(curve_results())
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog" and ax.get_yscale() == "log"
    curves = {c.get_label(): c.lines[0] for c in ax.containers}
    assert set(curves) == {"FLAP @ 0.2", "LLM-Pruner Element¹ @ 0.2"}
    assert list(curves["FLAP @ 0.2"].get_xdata()) == [0, 20, 60, 250]
    save(fig, tmp_path / "recovery")
    assert (tmp_path / "recovery.png").stat().st_size > 0
