"""The Snakemake workflow: both configs resolve, and the whole suite runs on the tiny model."""
from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, TINY_METHODS, run_snakemake, write_config

from prunebench.reporting.results import SUMMARY_COLUMNS


@pytest.mark.parametrize("configs", [["default"], ["default", "extended"], ["default", "extended", "models"],
                                     ["default", "round_to"], ["paper"]])
def test_dry_run_resolves_every_job(configs, tmp_path, data_root):
    import subprocess

    result = subprocess.run([*SNAKEMAKE, "-n", "--cores", "2", "--configfile", *[f"config/{c}.yaml" for c in configs],
                             "--config", f"data_dir={data_root}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "evaluate" in result.stdout and "prune" in result.stdout
    if "extended" in configs:  # the depth methods join the default suite's rows, recovery and benchmark
        assert "results/smollm2-135m/shortgpt/0.5/lora/metrics.json" in result.stdout
    if "models" in configs:  # Gemma: exactly the rows its `runs` name, recovered where they say
        runs = yaml.safe_load((REPO / "config" / "models.yaml").read_text())["models"]["gemma3-270m"]["runs"]
        expected = {"dense/0"} | {f"{name}/{r:g}" for name, ratios in runs["prune"].items() for r in ratios}
        expected |= {f"{name}/{r:g}/lora" for name, ratios in runs["recover"].items() for r in ratios}
        planned = set(re.findall(r"results/gemma3-270m/(\S+)/metrics\.json", result.stdout))
        assert planned == expected and len(planned) == 1 + 18 + 3
        assert "results/gemma3-270m/efficiency.csv" in result.stdout


def test_tiny_suite_end_to_end(tiny_run):
    workdir, config = tiny_run
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    assert list(summary.columns[: len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    methods = set(summary["method"])
    assert {"dense", "flap", "wanda-sp", "magnitude-sp", "random"} <= methods
    dense = summary[summary["method"] == "dense"].iloc[0]
    for _, row in summary[summary["method"] != "dense"].iterrows():
        assert row["params"] < dense["params"]
        assert row["removed_fraction"] == pytest.approx(0.5, abs=0.06)
        assert row["wikitext2"] > 1 and 0 <= row["average"] <= 1
    metrics = json.loads((workdir / "results" / "tiny" / "flap" / "0.5" / "metrics.json").read_text())
    assert metrics["pruning"]["calibration"]["id"] == "c4-8x32-seed0"
    assert metrics["dtype"] == "float32" and metrics["seed"] == 0
    # every evaluation keeps its items; every pruned and recovered row is compared with dense
    for path in (workdir / "results" / "tiny").glob("**/metrics.json"):
        assert (path.parent / "items.csv").is_file()
    comparisons = pd.read_csv(workdir / "results" / "comparisons.csv")
    pruned = summary[summary["method"] != "dense"]
    dense_refs = comparisons[(comparisons["reference"] == "dense") & (comparisons["column"] == "average")]
    assert len(dense_refs) == len(pruned) and (dense_refs["items"] == 6).all()  # 2 tasks x 3 documents
    untuned = comparisons[comparisons["reference"] == "untuned"]
    assert set(untuned["method"]) == {m for m, tune in TINY_METHODS.items() if tune}
    assert metrics["provenance"]["data_sha256"]["wikitext2"]["wiki.test.raw"].startswith("173c87a5")
    assert any("windows" in d for d in metrics["deviations"])
    # SmolLM2's tokenizer adds no BOS: auto is none, read back from the windows and from lm-eval
    assert metrics["bos"] == {"setting": "auto", "policy": "none", "perplexity": "none",
                              "zeroshot": {"add_bos_token": False, "requests": "none"}}
    assert metrics["family"] == "LLaMA architecture" and metrics["pruning"]["calibration"]["bos"] == {
        "setting": "auto", "windows": "none"}
    assert metrics["pruning"]["details"]["attention_unit"] == "kv_group"
    # speed: every pruned model has a row; equal layer shapes were timed once, different ones not
    efficiency = pd.read_csv(workdir / "results" / "tiny" / "efficiency.csv").set_index("method")
    assert set(efficiency.index) == methods
    uniform = efficiency.loc[["wanda-sp", "magnitude-sp", "random"], "measured_on"]
    assert uniform.nunique() == 1 and uniform.iloc[0] in {f"{m}/0.5" for m in uniform.index}
    assert efficiency.loc["flap", "measured_on"] == "flap/0.5"
    assert efficiency.loc["random", "prefill_b1_speedup"] == efficiency.loc["wanda-sp", "prefill_b1_speedup"]
    # both depth methods remove 2 of the 4 layers: one timing; every speedup with its paired interval
    depth = efficiency.loc[["shortgpt", "shortened-llama-ppl"], "measured_on"]
    assert depth.nunique() == 1 and depth.iloc[0] in {"shortgpt/0.5", "shortened-llama-ppl/0.5"}
    for measure in ("prefill_b1", "decode"):
        assert (efficiency[f"{measure}_speedup_low"] <= efficiency[f"{measure}_speedup"]).all()
        assert (efficiency[f"{measure}_speedup"] <= efficiency[f"{measure}_speedup_high"]).all()
    assert (efficiency["repeats"] == 2).all()
    # the depth-pruned checkpoint has fewer layers, and its recovered model too
    for tune in ("", "lora/"):
        checkpoint = workdir / "results" / "tiny" / "shortgpt" / "0.5" / f"{tune}model"
        assert json.loads((checkpoint / "config.json").read_text())["num_hidden_layers"] == 2
    # the recovery curve's point: its own recovery of 4 steps from the pruned model, compared with the
    # default recovery's 2 steps, in its own table and figure (not in the main table)
    point = json.loads((workdir / "results" / "tiny" / "flap" / "0.5" / "lora-4" / "metrics.json").read_text())
    assert point["tune"] == "lora-4" and point["pruning"]["recovery"]["log"]["schedule"]["steps"] == 4
    assert point["pruning"]["recovery"]["settings"]["warmup"] == 2  # 1 of 2 steps: 2 of 4
    previous = comparisons[(comparisons["tune"] == "lora-4") & (comparisons["reference"] == "previous")]
    assert set(previous["reference_tune"]) == {"lora"} and set(previous["method"]) == {"flap"}
    assert "lora-4" not in (workdir / "reports" / "tables" / "main.md").read_text()
    recovery_md = (workdir / "reports" / "tables" / "recovery.md").read_text()
    assert re.search(r"\| FLAP +\| +4 \|", recovery_md), recovery_md
    assert (workdir / "reports" / "figures" / "recovery.svg").is_file()
    # the deployed formats: GGUF (f16 written, Q8_0 by llama.cpp's quantizer) of the dense model and of
    # FLAP's pruned and recovered models; a standard HF folder for the dense model only (FLAP's widths
    # differ by layer); llama.cpp's perplexity on the same windows as PyTorch's; speed per format
    for row in ("dense/0", "flap/0.5", "flap/0.5/lora"):
        folder = workdir / "results" / "tiny" / row
        record = json.loads((folder / "export" / "export.json").read_text())
        assert record["gguf"]["status"] == "written" and set(record["files"]) == {"model-f16.gguf", "model-Q8_0.gguf"}
        assert record["hf"]["hf"] == ("written" if row == "dense/0" else "not expressible")
        ours = json.loads((folder / "llamacpp" / "metrics.json").read_text())["perplexity"]
        pytorch = json.loads((folder / "metrics.json").read_text())["perplexity"]["wikitext2"]
        assert ours["f16"]["wikitext2"]["windows"] == pytorch["windows"] == 4
        assert ours["f16"]["wikitext2"]["ppl"] == pytest.approx(pytorch["ppl"], rel=1e-2), row
    speed = pd.read_csv(workdir / "results" / "tiny" / "efficiency-llamacpp.csv")
    assert sorted(zip(speed["method"], speed["format"], speed["dense_format"])) == [
        ("dense", "Q8_0", "f16"), ("dense", "f16", "f16"), ("flap", "Q8_0", "Q8_0"), ("flap", "Q8_0", "f16"),
        ("flap", "f16", "f16")]
    assert (speed["decode_speedup_low"] <= speed["decode_speedup"]).all()
    assert (speed["decode_speedup"] <= speed["decode_speedup_high"]).all()
    assert "| FLAP " in (workdir / "reports" / "tables" / "deployment_speed.md").read_text()
    # nothing left to do on a second run
    again = run_snakemake(workdir, config, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # another config file that adds a method (as config/extended.yaml does) and switches on the dense
    # model's full test sets (its own setting): only the new rows and the dense evaluation are planned
    # (the tiny recovery keeps no update, so the candidates' order is the next test's)
    # Giving Random a second calibration seed adds its seed run without redoing its main run's prune
    # (whose job reads the entry without `seeds`), and a recovery curve adds its points' recoveries and
    # evaluations.
    more = yaml.safe_load(config.read_text())
    more["evaluation"]["perplexity"]["full_for_dense"] = True
    extended = yaml.safe_load((REPO / "config" / "extended.yaml").read_text())["methods"]["llm-pruner-l2"]
    more["methods"]["llm-pruner-l2"] = dict(extended, tune=True)
    assert "seeds" not in more["methods"]["random"]
    more["methods"]["random"]["seeds"] = [0, 1]
    more["recovery_curve"] = {"methods": ["flap", "random"], "ratios": [0.5], "steps": [6]}
    plan = run_snakemake(workdir, write_config(workdir / "more.yaml", more), "-n").stdout
    planned, rule = {}, None  # rule (or checkpoint) -> its planned jobs' first outputs
    for line in plan.splitlines():
        if re.fullmatch(r"(local)?(rule|checkpoint) \w+:", line):
            rule = line.split()[1].rstrip(":")
        elif line.startswith("    output: "):
            planned.setdefault(rule, []).append(line.split()[1].rstrip(","))
    assert len(planned["evaluate_dense"]) == 1
    for rule in ("recover", "evaluate_tuned"):
        assert len(planned[rule]) == 1 and "/llm-pruner-l2/" in planned[rule][0], planned
    for rule in ("prune", "evaluate"):
        assert sorted(planned[rule]) == [f"results/tiny/{run}/0.5/{'model' if rule == 'prune' else 'metrics.json'}"
                                         for run in ("llm-pruner-l2", "random@seed1")], planned
    assert sorted(planned["recover_curve"]) == [f"results/tiny/{m}/0.5/lora-6/model" for m in ("flap", "random")]
    assert len(planned["evaluate_curve"]) == 2


def test_a_curve_points_recipe_differs_from_the_recovery_only_in_its_steps():
    """Warm-up and validation interval keep their share of the steps (2 and 10 of 20: 25 and 125 of
    250, 1 and 4 of 7 rounded); fractions and an epoch-based recipe are kept as given."""
    from prunebench.config import curve_recovery

    recovery = {"r": 8, "steps": 20, "warmup": 2, "eval_every": 10, "lr": 6e-4}
    assert curve_recovery(recovery, 250) == dict(recovery, steps=250, warmup=25, eval_every=125)
    assert curve_recovery(recovery, 7) == dict(recovery, steps=7, warmup=1, eval_every=4)
    assert curve_recovery(dict(recovery, warmup=0), 3) == dict(recovery, steps=3, warmup=0, eval_every=2)
    fractions = dict(recovery, warmup=0.1, eval_every=0.5)
    assert curve_recovery(fractions, 250) == dict(fractions, steps=250)
    epochs = {"steps": None, "epochs": 2, "warmup": 100, "eval_every": 100}
    assert curve_recovery(epochs, 500) == dict(epochs, steps=500)


def test_rows_a_later_config_file_adds_leave_the_finished_evaluations_inputs_alone():
    """An evaluation's inputs are its checkpoint and those before it that it may share an evaluation
    with (`checkpoint_order`): adding config/extended.yaml's rows must change them for no default run,
    and every default checkpoint is still a candidate for the runs after it."""
    from snakemake.utils import update_config

    from prunebench.config import checkpoint_order

    default = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    extended = yaml.safe_load((REPO / "config" / "extended.yaml").read_text())
    both = copy.deepcopy(default)
    update_config(both, extended)  # as snakemake merges --configfile default.yaml extended.yaml
    seeded = [name for name, m in extended["methods"].items() if "seeds" in m]
    for ratio, count in (("0.2", 14), ("0.5", 14)):  # 7 methods w/o and w/ tune
        before, after = (checkpoint_order(config, "smollm2-135m", ratio) for config in (default, both))
        assert len(before) == count and len(set(before)) == count
        assert after[:count] == before  # each default run's candidates: the same checkpoints
        assert {run for run, _ in after[count:]} == set(extended["methods"]) - set(default["methods"])
    # second seeds are evaluated on their own: in no run's candidates, so adding them moves none
    assert seeded and not any("@seed" in run for run, _ in checkpoint_order(both, "smollm2-135m", "0.2"))


def config_with_runs(runs: dict) -> dict:
    config = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    config["models"]["smollm2-135m"]["runs"] = runs
    return config


@pytest.mark.parametrize("runs, message", [
    ({"prune": {"flapp": [0.2]}}, "runs.prune.flapp: no method entry 'flapp'; configured: flap, wanda-sp, "),
    ({"prune": {"flap": [0.3]}}, r"models.smollm2-135m.runs.prune.flap: ratio 0.3 is not among the ratios "
                                 r"\[0.2, 0.5\]"),
    ({"prune": {"flap": [0.2]}, "recover": {"flap": [0.5]}},
     r"models.smollm2-135m.runs.recover.flap: ratio 0.5 is recovered but not pruned \(runs.prune.flap\)"),
])
def test_a_models_runs_must_name_configured_entries_and_ratios(runs, message):
    from prunebench.config import ConfigError, check_config

    with pytest.raises(ConfigError, match=message):
        check_config(config_with_runs(runs), verify_data=False)


def test_a_models_runs_recover_only_entries_that_allow_it():
    from prunebench.config import ConfigError, check_config

    config = config_with_runs({"prune": {"random": [0.2]}, "recover": {"random": [0.2]}})
    config["methods"]["random"]["tune"] = False
    with pytest.raises(ConfigError, match="runs.recover.random: methods.random has tune: false, so it is never"):
        check_config(config, verify_data=False)


def test_a_model_without_runs_gets_every_entry_and_one_with_runs_only_its_own():
    from prunebench.config import checkpoint_order, runs_at

    config = config_with_runs({"prune": {"wanda-sp": [0.2, 0.5], "flap": [0.2]}, "recover": {"flap": [0.2]}})
    config["models"]["other"] = {"source": "builtin:smollm2-135m"}
    config["methods"]["flap"]["seeds"] = [0, 1]
    assert runs_at(config, "smollm2-135m", "0.2") == ["flap", "wanda-sp"]  # config order; no further seed
    assert runs_at(config, "smollm2-135m", "0.5") == ["wanda-sp"]
    assert runs_at(config, "smollm2-135m", "0.2", "lora") == ["flap"]
    assert runs_at(config, "smollm2-135m", "0.5", "lora") == []
    assert checkpoint_order(config, "smollm2-135m", "0.2") == [("flap", "none"), ("flap", "lora"), ("wanda-sp", "none")]
    assert runs_at(config, "other", "0.5") == list(config["methods"]) + ["flap@seed1"]
    assert len(checkpoint_order(config, "other", "0.5")) == 14


def test_models_config_keeps_smollm2_rows_and_spares_gemma_the_full_dense_evaluation():
    """config/models.yaml on top of the extended suite: SmolLM2's runs and their order are the extended
    suite's (no finished row is redone), Gemma's dense model stays on the subsample."""
    from snakemake.utils import update_config

    from prunebench.config import checkpoint_order, full_for_dense, runs_at

    merged = {}
    for name in ("default", "extended", "models"):
        update_config(merged, yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text()))
        if name == "extended":
            extended = copy.deepcopy(merged)
    for ratio in ("0.2", "0.5"):
        assert checkpoint_order(merged, "smollm2-135m", ratio) == checkpoint_order(extended, "smollm2-135m", ratio)
        assert runs_at(merged, "smollm2-135m", ratio) == runs_at(extended, "smollm2-135m", ratio)
    assert runs_at(merged, "gemma3-270m", "0.2", "lora") == ["flap", "wanda-sp", "llm-pruner-element1"]
    assert full_for_dense(merged, "smollm2-135m", "zeroshot") and not full_for_dense(merged, "gemma3-270m", "zeroshot")
