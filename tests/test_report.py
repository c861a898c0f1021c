"""Reports from the committed results fixture (tests/fixtures/report: a real run of the suite on two
tiny random LLaMAs at both default ratios): tables, figures, the README and its "what we see"."""
from __future__ import annotations

import copy
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from prunebench.reporting.narrative import what_we_see
from prunebench.reporting.plots import build_figure, figure_names, save
from prunebench.reporting.protocol import DAGGER, calibration_notes
from prunebench.reporting.readme import readme
from prunebench.reporting.results import (
    TASK_COLUMNS,
    Results,
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
                        sorted(results.glob("*/efficiency.csv")), yaml.safe_load((FIXTURE / "config.yaml").read_text()))


@pytest.fixture(scope="module")
def results() -> Results:
    return fixture_results()


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
    return Results(summary, results.efficiency, metrics, results.config)


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


# --- tables --------------------------------------------------------------------------------------

def test_ranks_mark_best_and_second_only_where_they_mean_something():
    values = pd.Series([3.0, 1.0, 2.0, math.nan])
    assert list(_ranks(values, lower_is_better=True)) == [0, 1, 2, 0]
    assert list(_ranks(values, lower_is_better=False)) == [1, 0, 2, 0]
    assert list(_ranks(pd.Series([5.0, 4.0]), lower_is_better=True)) == [0, 1]  # no "second" of two
    assert list(_ranks(pd.Series([4.0, 4.0, 5.0]), lower_is_better=True)) == [1, 1, 2]  # ties share


def test_main_table_shows_every_summary_number_with_marks(results):
    table = build_table("main", results)
    assert table.columns[:2] == ["WikiText2↓", "PTB↓"] and table.columns[-1] == "Average"
    groups = dict(table.groups)
    assert list(groups)[0] == "tiny-gqa · Ratio = 0%"
    for _, row in results.summary.iterrows():
        label = f"{row['model']} · {setting_label(row['ratio'], row['tune'])}"
        cells = dict(groups[label])[method_label(row["method"])]
        assert cells[0].text == f"{row['wikitext2']:.2f}" and cells[0].dagger
        assert cells[2].text == f"{100 * row['boolq']:.2f}" and cells[2].detail == f"±{100 * row['boolq_stderr']:.1f}"
    for label, rows in table.groups:
        values = [float(cells[0].text) for _, cells in rows]
        best = [float(cells[0].text) for _, cells in rows if cells[0].rank == 1]
        assert best == ([min(values)] * len(best) if len(rows) > 1 else [])


def test_tuned_rows_form_their_own_groups(results):
    table = build_table("main", with_tuned_copy(results))
    labels = [label for label, _ in table.groups]
    assert labels.index("tiny-gqa · Ratio = 50% w/ tune") == labels.index("tiny-gqa · Ratio = 50% w/o tune") + 1
    assert labels.index("tiny-mha · Ratio = 0%") > labels.index("tiny-gqa · Ratio = 50% w/ tune")


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
            assert cells[first_prefill].detail == f"({row['prefill_b1_speedup']:.2f}× {interval}, {share:.0%} of ideal)"
            assert cells[0].detail == f"({row['params_ratio']:.2f}× dense)"
    notes = " ".join(table.notes)
    # the fixture's benchmark config, and the repeats its pairs took
    assert "3 to 8 paired repeats" in notes and "decode: 16 greedy steps" in notes
    assert f"here {results.efficiency['repeats'].min()}–8" in notes
    assert "95% percentile bootstrap interval" in notes


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
    """The fixture with its dense models' perplexity also measured on the full test sets (the
    default config's `full_for_dense`), built as the evaluation writes it: the subsample plus "full"."""
    metrics = copy.deepcopy(results.metrics)
    rows = []
    for _, row in results.summary.iterrows():
        m = metrics[(row["model"], row["method"], float(row["ratio"]), row["tune"])]
        if row["method"] == "dense":
            for name, r in m["perplexity"].items():
                r["full"] = dict(r, ppl=2 * r["ppl"], windows=r["windows_total"])
        rows.append(summary_row(m))
    summary = pd.DataFrame(rows).merge(results.summary[[c for c in results.summary if c.endswith("_subsampled")]
                                                      + ["model", "method", "ratio", "tune", "average_stderr"]])
    return Results(order_rows(summary), results.efficiency, metrics, results.config)


def test_dense_table_shows_the_full_test_sets_beside_the_subsample(results):
    full = with_full_dense(results)
    dense = full.dense("tiny-gqa")
    assert dense["wikitext2_full"] == pytest.approx(2 * dense["wikitext2"])
    assert full.summary.loc[full.summary["method"] != "dense", "wikitext2_full"].isna().all()
    md = render(build_table("dense", full), "md")
    row = next(line for line in md.splitlines() if "| tiny-gqa |" in line)
    assert f"| {dense['wikitext2_full']:.2f} | {dense['ptb_full']:.2f} | {dense['wikitext2']:.2f}{DAGGER} |" in row
    assert f"{100 * dense['boolq']:.2f}{DAGGER}" in row
    assert "full: all 4765 windows; subsample: 4 evenly spaced windows" in md
    assert "## The dense model under the papers' protocol" in readme(full, {"main": "M", "dense": md}, [])


def test_protocol_is_stated_under_each_table(results):
    notes = " ".join(build_table("main", results).notes)
    assert "4 of 4765 windows" in notes  # the fixture's max_windows against WikiText-2's windows at seqlen 64
    assert "HellaSwag acc_norm (3 of 10042 documents†)" in notes and "BOS token not added" in notes
    assert "FLAP: C4-en train, first 1000 documents of shard 00000, 8x32 tokens, seed 0; paper: WIFV" in notes
    assert "Random: no calibration data" in notes
    assert "wikitext2/wiki.test.raw 173c87a53759" in notes


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
    md = render(table, "md")
    assert "quoted, not reproduced" in md
    for anchor in ("| LLaMA-7B [a] | 12.62 | 22.14 |", "| LLM-Pruner Element¹ [a] | 19.09 |",
                   "| LLM-Pruner Element² [a] | 17.37 |", "| FLAP [b,c] | 14.62 |", "| Wanda-sp [b,c] | 22.12 |"):
        assert anchor in md
    assert all(s["url"] in md for s in ref["sources"].values())


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1


@pytest.mark.parametrize("name", table_names(["wikitext2", "ptb"], zeroshot=True, efficiency=True, dense_full=True))
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

def test_what_we_see_names_the_best_methods_from_the_numbers(results):
    paragraphs = what_we_see(results)
    assert len(paragraphs) == 3 and paragraphs[-1].startswith(DAGGER)
    for model, text in zip(results.models, paragraphs):
        rows = results.summary[(results.summary["model"] == model) & (results.summary["method"] != "dense")]
        for (ratio, tune), group in rows.groupby(["ratio", "tune"]):
            best = group.loc[group["wikitext2"].idxmin()]
            expected = (f"At {setting_label(ratio, tune)}, {method_label(best['method'])} keeps the lowest "
                        f"WikiText-2 perplexity ({best['wikitext2']:.2f}{DAGGER}")
            assert expected in text
        recovered = (rows["tune"] != "none").any()
        assert ("LoRA recovery lowered" in text) == recovered
        assert ("no recovered (w/ tune) models" in text) == (not recovered)
        assert "FLAP at 0.2 keeps" in text  # FLAP's adaptive structure differs per layer
        eff = results.efficiency[(results.efficiency["model"] == model) & (results.efficiency["method"] != "dense")]
        share = eff["prefill_b1_speedup"] / eff["ideal_speedup"]
        assert f"Measured speedups reach {share.min():.0%}–{share.max():.0%} (prefill, batch 1)" in text
        # which method gives the best perplexity at each real speedup: the front, slowest first
        frame = quality_speed(results, model)
        front = frame[frame["decode_front"]].sort_values("decode_speedup")
        segment = text.split("decode, w/o tune: ")[1].split(";")[0]
        assert [part.rsplit(" (", 1)[0] for part in segment.split(" → ")] == [
            method_label(m) + ("" if m == "dense" else f" at {r:g}") for m, r in zip(front["method"], front["ratio"])]


def test_recovery_sentence_counts_improvements(results):
    text = " ".join(what_we_see(with_tuned_copy(results)))
    n = (untuned(results)["method"] != "dense").sum() // len(results.models)  # every pruned row of a model is tuned
    assert f"LoRA recovery lowered WikiText-2 perplexity for {n} of {n} pruned models (median change -50%)" in text
    assert f"raised the zero-shot average for {n} of {n} (median +10.00 points)" in text


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
    md = render(build_table("cost", tuned), "md")
    lines = md.splitlines()
    group = lines.index(next(line for line in lines if line.startswith("| tiny-gqa · Ratio = 50% |")))
    flap = next(line for line in lines[group:] if "| FLAP |" in line)
    assert f"| FLAP | {record['wall_s']['prune']:.1f} | {record['peak_memory_mb']:,.0f} | – | – |" in flap
    assert md.count("| tiny-gqa · Ratio = 50% |") == 1 and "w/o tune" not in md
    # the only paper-scale estimate the fixture's prune jobs recorded: LLM-Pruner Element1's
    assert "Expected memory" in md and "LLM-Pruner Element¹: 22 GB" in md and "FLAP:" not in md.split("Expected")[1]


def test_cost_table_quotes_the_paper_scale_memory_a_prune_job_recorded(results):
    from methods.llm_pruner import paper_scale_memory

    key = ("tiny-gqa", "flap", 0.5, "none")
    record = copy.deepcopy(results.metrics[key])
    record["pruning"]["details"]["memory_at_paper_scale"] = paper_scale_memory("element2")
    md = render(build_table("cost", Results(results.summary, results.efficiency, {**results.metrics, key: record},
                                            results.config)), "md")
    assert "on LLaMA-7B" in md and "FLAP: 43 GB (fp16 weights 13.5, float32 Fisher 21.0" in md
