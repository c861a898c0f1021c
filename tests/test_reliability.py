"""Reliability through the real entry point (snakemake on the repository's Snakefile): bad input is
refused before any job with a message naming the value, finished results are never touched, a run
killed with SIGKILL resumes with the same command, reruns are bit-identical, every result carries
its provenance, and nothing executes code from a checkpoint or a config."""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, run_snakemake, tiny_suite_config, write_config

from prunebench.sources.datasets import sha256_file

PROFILE = ("--profile", "workflow/profiles/default")


def small_config(tiny_dir: Path, data_root: Path) -> dict:
    """The tiny suite cut to what these tests need: FLAP (calibrated) and random, no recovery,
    one perplexity set and two zero-shot tasks, no speed benchmark."""
    config = tiny_suite_config(tiny_dir, data_root)
    config["methods"] = {name: dict(config["methods"][name], tune=False) for name in ("flap", "random")}
    config["evaluation"]["perplexity"].update(datasets=["wikitext2"], max_windows=2)
    config["evaluation"]["zeroshot"].update(tasks=["boolq", "piqa"], limit=2)
    config["benchmark"]["enabled"] = False
    return config


def snapshot(workdir: Path) -> dict[str, tuple[int, str]]:
    """Every file under results/, resources/ and reports/ with its mtime and sha256."""
    return {str(p.relative_to(workdir)): (p.stat().st_mtime_ns, sha256_file(p))
            for top in ("results", "resources", "reports") for p in sorted((workdir / top).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_dir, data_root):
    """A workdir whose run has finished: (workdir, config)."""
    workdir = tmp_path_factory.mktemp("finished")
    config = small_config(tiny_dir, data_root)
    run_snakemake(workdir, write_config(workdir / "good.yaml", config), *PROFILE)
    return workdir, config


# --- bad input ----------------------------------------------------------------------------------

def corrupt_copy(data_root: Path, dest: Path, dataset: str, file: str, how: str) -> Path:
    """The shared data with one file removed or one byte changed."""
    shutil.copytree(data_root, dest)
    path = dest / dataset / file
    if how == "missing":
        path.unlink()
    else:
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    return dest


def save_config_only(config, dest: Path) -> Path:
    """A local HF model folder with just its config.json: enough for the source check."""
    config.save_pretrained(dest)
    return dest


def not_llama_gpt2(tmp: Path) -> str:
    from transformers import GPT2Config

    return f"path:{save_config_only(GPT2Config(n_layer=2, n_embd=32, n_head=2), tmp / 'gpt2')}"


def not_llama_phi(tmp: Path) -> str:
    from transformers import PhiConfig

    phi = PhiConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2)
    return f"path:{save_config_only(phi, tmp / 'phi')}"


def set_in(config: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        config = config[key]
    config[last] = value


# (id, change of the good config, pieces the message must contain)
BAD_INPUTS = [
    ("ratio-one", lambda c, t: set_in(c, "ratios", [1.0]), ["pruning ratio 1.0 is not allowed", "[0, 1)"]),
    ("ratio-above-one", lambda c, t: set_in(c, "ratios", [1.5]), ["pruning ratio 1.5 is not allowed", "[0, 1)"]),
    ("ratio-negative", lambda c, t: set_in(c, "ratios", [-0.2]), ["pruning ratio -0.2 is not allowed", "[0, 1)"]),
    ("ratio-not-a-number", lambda c, t: set_in(c, "ratios", ["half"]), ["ratios[0] = 'half': 'half' is not of type 'number'", "each in (0, 1)"]),
    ("unknown-method", lambda c, t: set_in(c, "methods.flap.module", "flapp"),
     ["unknown method module 'flapp'", "allowed:", "flap", "wanda_sp"]),
    ("misspelled-parameter", lambda c, t: set_in(c, "methods.flap.params", {"metrc": "WIFV"}),
     ["methods.flap.params: method 'flap' has no parameter 'metrc'", "did you mean 'metric'?",
      "allowed: metric, structure"]),
    ("parameter-value", lambda c, t: set_in(c, "methods.flap.params", {"metric": "WIFVV"}),
     ["metric='WIFVV'", "choose one of ['IFV', 'WIFV', 'WIFN']"]),
    ("unknown-source", lambda c, t: set_in(c, "models.tiny.source", "hf:org/model"),
     ["unknown model source 'hf:org/model'", "allowed: builtin:..., path:..., gguf:..., hub:..."]),
    ("missing-path", lambda c, t: set_in(c, "models.tiny.source", "path:/nonexistent/model"),
     ["path:/nonexistent/model", "/nonexistent/model/config.json does not exist"]),
    ("missing-gguf", lambda c, t: set_in(c, "models.tiny.source", "gguf:/nonexistent/m.gguf"),
     ["no such GGUF file /nonexistent/m.gguf"]),
    ("not-llama-gpt2", lambda c, t: set_in(c, "models.tiny.source", not_llama_gpt2(t)),
     ["gpt2 (GPT2LMHeadModel, model_type 'gpt2') cannot be pruned correctly: it has no decoder layers at "
      "model.layers (model has transformer, lm_head)", "Supported families: LLaMA architecture (llama), Mistral"]),
    ("not-llama-phi", lambda c, t: set_in(c, "models.tiny.source", not_llama_phi(t)),
     ["phi (PhiForCausalLM, model_type 'phi') cannot be pruned correctly: decoder layers lack self_attn.o_proj, "
      "mlp.gate_proj, mlp.up_proj, mlp.down_proj (self_attn is PhiAttention with q_proj, k_proj, v_proj, dense; "
      "mlp is PhiMLP with activation_fn, fc1, fc2)", "Gemma-3 (text) (gemma3_text)"]),
    ("bos-unknown", lambda c, t: set_in(c, "models.tiny.bos", "always"),
     ["models.tiny.bos = 'always': 'always' is not one of ['auto', 'text-start', 'every-window', 'none']"]),
    ("missing-data-file", lambda c, t: set_in(c, "data_dir", str(corrupt_copy(
        Path(c["data_dir"]), t / "data", "wikitext2", "wiki.test.raw", "missing"))),
     ["missing data file", "wikitext2/wiki.test.raw", "dataset 'wikitext2'"]),
    ("corrupt-data-file", lambda c, t: set_in(c, "data_dir", str(corrupt_copy(
        Path(c["data_dir"]), t / "data", "boolq", "dev.jsonl", "corrupt"))),
     ["corrupt data file", "boolq/dev.jsonl", "!= expected ebc29ea3808c5c61"]),
    ("missing-data-dir", lambda c, t: set_in(c, "data_dir", "/nonexistent/data"),
     ["data folder /nonexistent/data does not exist"]),
    ("schema-minimum", lambda c, t: set_in(c, "threads", 0), ["threads = 0: 0 is less than the minimum of 1"]),
    ("schema-unknown-key", lambda c, t: set_in(c, "ratio", [0.5]),
     ["Additional properties are not allowed ('ratio' was unexpected); allowed keys: data_dir, seed"]),
    ("schema-negative-gpus", lambda c, t: set_in(c, "models.tiny.resources", {"gpus": -1}),
     ["models.tiny.resources.gpus = -1: -1 is less than the minimum of 0"]),
    ("unknown-task", lambda c, t: set_in(c, "evaluation.zeroshot.tasks", ["boolq", "piqaa"]),
     ["unknown zero-shot task 'piqaa'", "allowed: arc_challenge, arc_easy, boolq"]),
    ("limit-too-large", lambda c, t: set_in(c, "evaluation.zeroshot.limit", {"boolq": 5000, "piqa": 2}),
     ["zero-shot limit 5000 for 'boolq' is outside 1..3270"]),
    ("limit-unknown-task", lambda c, t: set_in(c, "evaluation.zeroshot.limit", {"boolq": 2, "hellaswag": 2}),
     ["zero-shot limit names tasks not evaluated: ['hellaswag']"]),
    # A change may return the config's text instead: YAML itself keeps the last of two equal keys.
    ("duplicated-key", lambda c, t: yaml.safe_dump(c, sort_keys=False) + "ratios: [0.2]\n",
     ["bad.yaml: key 'ratios' appears twice in one mapping (lines ", "YAML would keep only the last value"]),
    ("val-size-too-large", lambda c, t: (set_in(c, "methods.random.tune", True), set_in(c, "recovery.val_size", 2000)),
     ["recovery.val_size 2000 leaves no training example: the alpaca data has 2000 examples (allowed: 1..1999)"]),
    ("warmup-not-steps", lambda c, t: (set_in(c, "methods.random.tune", True), set_in(c, "recovery.warmup", 2.5)),
     ["recovery.warmup 2.5 is neither a whole number of steps nor a fraction (below 1) of the optimizer steps"]),
    ("model-method-params",
     lambda c, t: set_in(c, "models.tiny.method_params", {"llm_pruner": {"layer_rnage": [1, 3]}}),
     ["models.tiny.method_params.llm_pruner: method 'llm_pruner' has no parameter 'layer_rnage' "
      "(did you mean 'layer_range'?)"]),
    ("seeds-beside-calibration-seed", lambda c, t: set_in(c, "methods.flap.calibration.seed", 0),
     ["method 'flap': calibration.seed 0 and seeds [0, 1] both set; give the calibration seeds in `seeds` only"]),
    ("seeds-repeated", lambda c, t: set_in(c, "seeds", [1, 1]), ["seeds: [1, 1] has non-unique elements",
                                                               "a fresh calibration draw"]),
    ("seed-ratio-not-a-ratio", lambda c, t: set_in(c, "seed_ratios", [0.2]),
     ["seed_ratios: 0.2 is not among the ratios [0.5]"]),
    ("curve-unknown-method", lambda c, t: set_in(c, "recovery_curve", {"methods": ["flapp"], "ratios": [0.5],
                                                                       "steps": [50]}),
     ["recovery_curve.methods: 'flapp' is not a method of this config; allowed: flap, "]),
    ("curve-ratio", lambda c, t: set_in(c, "recovery_curve", {"methods": ["flap"], "ratios": [0.2], "steps": [50]}),
     ["recovery_curve.ratios: 0.2 is not among the ratios [0.5]"]),
    ("curve-default-steps", lambda c, t: set_in(c, "recovery_curve", {"methods": ["flap"], "ratios": [0.5],
                                                                      "steps": [c["recovery"]["steps"]]}),
     ["recovery_curve.steps: 2 is the recovery's own steps, whose rows the suite has already (w/ LoRA)"]),
    ("export-unknown-method", lambda c, t: set_in(c, "export", {"enabled": True, "methods": ["flapp"]}),
     ["export.methods: 'flapp' is not among this config's methods; allowed: ['flap', "]),
    ("export-without-f16", lambda c, t: set_in(c, "export", {"enabled": True, "formats": ["Q4_K_M"]}),
     ["export.formats ['Q4_K_M'] lacks f16: the quantized types are made from it"]),
    ("evaluation-dtype", lambda c, t: set_in(c, "evaluation.dtype", "float64"),
     ["evaluation.dtype = 'float64': 'float64' is not one of ['float32', 'bfloat16', 'float16']"]),
]


@pytest.fixture(scope="module")
def bad_runs(finished, tmp_path_factory):
    """Every bad config run against the finished workdir, two at a time (each run is mostly
    Snakemake starting up): ({id: (returncode, output)}, snapshot before, snapshot after)."""
    from concurrent.futures import ThreadPoolExecutor

    workdir, good = finished
    before = snapshot(workdir)

    def run(case) -> tuple[int, str]:
        name, change, _ = case
        tmp = tmp_path_factory.mktemp(name)
        config = copy.deepcopy(good)
        text = change(config, tmp)
        configfile = tmp / "bad.yaml"
        configfile.write_text(text) if isinstance(text, str) else write_config(configfile, config)
        result = run_snakemake(workdir, configfile, *PROFILE, check=False)
        return result.returncode, result.stdout + result.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip([case[0] for case in BAD_INPUTS], pool.map(run, BAD_INPUTS)))
    return results, before, snapshot(workdir)


@pytest.mark.parametrize("case, expected", [(b[0], b[2]) for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_before_any_job(case, expected, bad_runs):
    results, before, after = bad_runs
    returncode, output = results[case]
    assert returncode != 0
    for piece in expected:
        assert piece in output, output[-3000:]
    assert "Select jobs to execute" not in output  # refused while parsing: no job was scheduled
    assert after == before  # no result file was written, touched or removed


def test_optional_sections_may_be_omitted(finished, tmp_path):
    """No `recovery`, `benchmark` or `evaluation.zeroshot.tasks`: the schema's defaults (the
    reference's LoRA recipe, the papers' seven tasks) fill them in and the run is planned."""
    workdir, good = finished
    config = copy.deepcopy(good)
    for key in ("recovery", "benchmark"):
        config.pop(key, None)
    del config["evaluation"]["zeroshot"]["tasks"], config["evaluation"]["zeroshot"]["limit"]
    config["methods"]["random"]["tune"] = True
    result = run_snakemake(workdir, write_config(tmp_path / "partial.yaml", config), "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "recover" in output and "efficiency" in output
    assert "resources/data/openbookqa" in output  # the seventh task's data: the default task list


@pytest.mark.parametrize("damage", ["truncated", "tampered"])
def test_damaged_checkpoint_is_refused_by_the_job_that_reads_it(damage, finished, tmp_path):
    source, good = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)  # copy2 keeps mtimes: the copy is as finished as the original
    weights = workdir / "results" / "tiny" / "random" / "0.5" / "model" / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else raw[:-9] + bytes([raw[-9] ^ 1]) + raw[-8:])
    target = "results/tiny/random/0.5/metrics.json"
    outputs = {target, "results/tiny/random/0.5/items.csv"}  # the forced job's own outputs
    others = {k: v for k, v in snapshot(workdir).items() if k not in outputs and "/logs/" not in k}
    result = run_snakemake(workdir, workdir / "good.yaml", *PROFILE, "--force", target, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "is corrupt or was modified: model.safetensors sha256" in output, output[-3000:]
    assert "results/tiny/random/0.5/model" in output
    after = snapshot(workdir)
    assert {k: v for k, v in after.items() if k not in outputs and "/logs/" not in k and "benchmarks" not in k} == \
        {k: v for k, v in others.items() if "benchmarks" not in k}


# --- atomic writes ------------------------------------------------------------------------------

def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    from prunebench.io import atomic_path, write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"ppl": 1.0})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text('{"ppl": ')  # a job dying half-way through its output
        raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"ppl": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_checkpoint_save_leaves_the_previous_checkpoint(tmp_path, tokenizer):
    from conftest import tiny_model

    from prunebench.pruning.checkpoint import save_pruned, verify_checkpoint

    path = tmp_path / "model"
    save_pruned(tiny_model(), tokenizer, path, {"method": "first"})
    before = {p.name: sha256_file(p) for p in path.iterdir()}

    class DiesWhileSaving:
        def save_pretrained(self, folder):
            raise RuntimeError("killed while writing the tokenizer")

    with pytest.raises(RuntimeError):
        save_pruned(tiny_model(seed=1), DiesWhileSaving(), path, {"method": "second"})
    assert {p.name: sha256_file(p) for p in path.iterdir()} == before
    assert verify_checkpoint(path)["method"] == "first"


def test_a_full_disk_during_a_checkpoint_write_names_the_output_and_keeps_the_previous_one(tmp_path, tokenizer):
    import errno

    from conftest import tiny_model

    from prunebench.pruning.checkpoint import save_pruned, verify_checkpoint

    path = tmp_path / "model"
    save_pruned(tiny_model(), tokenizer, path, {"method": "first"})
    before = {p.name: sha256_file(p) for p in path.iterdir()}

    class DiskFills:  # half the tokenizer's files are written, then the disk is full
        def save_pretrained(self, folder):
            (folder / "tokenizer.json").write_text('{"version": ')
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=rf"no space left on device while writing {path}; the partial write was "
                                      r"removed and any previous model is kept") as err:
        save_pruned(tiny_model(seed=1), DiskFills(), path, {"method": "second"})
    assert err.value.errno == errno.ENOSPC
    assert {p.name: sha256_file(p) for p in path.iterdir()} == before
    assert verify_checkpoint(path)["method"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no model.tmp, no model.old


def test_job_scripts_take_paths_from_snakemake_and_the_seed_from_the_config():
    import sys
    import types

    import torch

    scripts = REPO / "workflow" / "scripts"
    for script in scripts.glob("*.py"):
        assert "resources/" not in script.read_text() and "results/" not in script.read_text(), script.name
    sys.path.insert(0, str(scripts))
    try:
        from common import start_job
    finally:
        sys.path.remove(str(scripts))
    threads = torch.get_num_threads()
    start_job(types.SimpleNamespace(log=[], threads=1, config={"seed": 7}))
    torch.set_num_threads(threads)
    assert torch.initial_seed() == 7


# --- kill and rerun -----------------------------------------------------------------------------

def incomplete_marks(workdir: Path) -> set[str]:
    """Outputs Snakemake had started but not finished (its .snakemake/incomplete markers)."""
    import base64

    root = workdir / ".snakemake" / "incomplete"
    # one marker per output: its path in urlsafe base64, long names split into "@"-prefixed folders
    return {base64.urlsafe_b64decode("".join(s.lstrip("@") for s in p.relative_to(root).parts)).decode()
            for p in root.rglob("*") if p.is_file()}


def test_sigkill_during_pruning_or_evaluation_then_same_command_resumes(tiny_dir, data_root, tmp_path):
    workdir = tmp_path / "run"
    config = tiny_suite_config(tiny_dir, data_root)
    config["methods"] = {"random": config["methods"]["random"]}  # with its recovery: prune, recover, evaluate
    config["benchmark"]["enabled"] = False
    configfile = write_config(tmp_path / "tiny.yaml", config)
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), *PROFILE]
    log = open(tmp_path / "killed.log", "w")
    run = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # Kill the moment a prune, recover or evaluate job is running (its output marked incomplete)
    # after another one has finished, so that the kill interrupts a job and leaves finished ones.
    def running_after_a_finished_one() -> bool:
        marks = incomplete_marks(workdir)  # an output exists before Snakemake has taken its job as done
        outputs = [*(workdir / "results").glob("tiny/*/*/metrics.json"), *(workdir / "results").glob("tiny/*/*/model")]
        done = [p for p in outputs if str(p.relative_to(workdir)) not in marks]
        return bool(done) and any(m.startswith("results/tiny/") for m in marks)

    deadline = time.monotonic() + 600
    while not running_after_a_finished_one():
        assert run.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no job ran after a finished one"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()

    incomplete = incomplete_marks(workdir)
    assert incomplete, "the kill came after every job had finished"
    assert any((workdir / ".snakemake" / "locks").iterdir())  # left behind: the rerun must cope with it
    # Finished: neither a log, nor in an output marked incomplete, nor a killed writer's temporary.
    finished = {k: v for k, v in snapshot(workdir).items()
                if "/logs/" not in k and not any(k == m or k.startswith(m + "/") for m in incomplete)
                and not any(part.endswith(".tmp") for part in Path(k).parts)}
    assert any(k.startswith("resources/models/tiny/") for k in finished)
    assert any(k.startswith("results/tiny/") for k in finished), "no prune or evaluate job had finished"

    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    assert (workdir / "results" / "summary.csv").is_file()
    after = snapshot(workdir)
    recomputed = [k for k, v in finished.items() if after.get(k) != v]
    assert not recomputed, f"finished outputs were rewritten: {recomputed}"
    assert not incomplete_marks(workdir)


# --- determinism and provenance -----------------------------------------------------------------

def _stable(metrics: dict) -> dict:
    """metrics.json less what legitimately differs between runs: wall times, speed, host, date."""
    drop = {"wall_s", "cpu_s", "throughput", "provenance", "peak_memory_mb"}
    out = {k: v for k, v in metrics.items() if k not in drop}
    out["pruning"] = {k: v for k, v in metrics["pruning"].items() if k not in drop | {"environment"}}
    return out


def test_same_config_and_seed_give_identical_masks_checkpoints_and_metrics(finished, tmp_path):
    source, _ = finished
    workdir = tmp_path / "again"
    shutil.copytree(source, workdir)
    results = workdir / "results" / "tiny"
    first = {m: (json.loads((results / m / "0.5" / "metrics.json").read_text()),
                 sha256_file(results / m / "0.5" / "model" / "model.safetensors")) for m in ("flap", "random")}
    run_snakemake(workdir, workdir / "good.yaml", *PROFILE, "--forcerun", "prune")
    for method, (metrics, weights_sha) in first.items():
        again = json.loads((results / method / "0.5" / "metrics.json").read_text())
        assert again["provenance"]["finished_at"] != metrics["provenance"]["finished_at"]  # really recomputed
        assert sha256_file(results / method / "0.5" / "model" / "model.safetensors") == weights_sha
        assert again["pruning"]["kept_heads"] == metrics["pruning"]["kept_heads"]
        assert _stable(again) == _stable(metrics)


def test_every_result_names_its_provenance_and_the_summary_traces_back(finished):
    workdir, config = finished
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    seeds = pd.read_csv(workdir / "results" / "seeds.csv")
    assert len(summary) == 1 + len(config["methods"])
    for row in summary.itertuples():
        runs = seeds[(seeds["method"] == row.method) & (seeds["ratio"] == row.ratio)]
        if row.seeds > 1:  # the geometric mean of its seeds' perplexities, each traced to its own run
            assert len(runs) == row.seeds
            assert row.wikitext2 == pytest.approx(math.exp(np.log(runs["wikitext2"]).mean()), rel=1e-12)
            for run in runs.itertuples():
                seeded = json.loads((workdir / "results" / row.model / run.run / f"{row.ratio:g}" / "metrics.json")
                                    .read_text())
                assert seeded["perplexity"]["wikitext2"]["ppl"] == run.wikitext2
        path = workdir / "results" / row.model / row.method / f"{row.ratio:g}" / "metrics.json"
        metrics = json.loads(path.read_text())
        assert metrics["params"] == row.params
        if row.seeds == 1:
            assert metrics["perplexity"]["wikitext2"]["ppl"] == row.wikitext2
        prov = metrics["provenance"]
        assert prov["config"]["models"] == {"tiny": {**config["models"]["tiny"], "bos": "auto"}}  # schema default
        assert prov["model_source"] == config["models"]["tiny"]["source"]
        assert prov["dense_model_sha256"]["model.safetensors"] == sha256_file(
            workdir / "resources" / "models" / "tiny" / "model.safetensors")
        assert set(prov["data_sha256"]) == {"wikitext2", "boolq", "piqa"}
        assert {"torch", "transformers", "lm-eval", "snakemake"} <= set(prov["packages"])
        assert len(prov["git_commit"].removesuffix("+dirty")) == 40
        assert metrics["wall_s"]["perplexity"] > 0 and metrics["wall_s"]["zeroshot"] > 0
        if row.method != "dense":
            checkpoint = path.parent / "model"
            assert prov["checkpoint_sha256"]["model.safetensors"] == sha256_file(checkpoint / "model.safetensors")
            assert metrics["pruning"]["wall_s"]["prune"] > 0


# --- security -----------------------------------------------------------------------------------

def test_results_hold_no_pickled_weights(finished):
    workdir, _ = finished
    weights = [p for top in ("results", "resources/models") for p in (workdir / top).rglob("*")
               if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    assert weights and all(p.suffix == ".safetensors" for p in weights), weights


def test_model_folder_with_custom_code_is_refused_without_running_it(tmp_path):
    from prunebench.sources.models import check_source

    sentinel = tmp_path / "code-ran"
    model = tmp_path / "custom"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                     "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}}))
    code = f"open({str(sentinel)!r}, 'w').write('x')\n"
    (model / "configuration_evil.py").write_text(code)
    (model / "modeling_evil.py").write_text(code)
    with pytest.raises(ValueError, match="trust_remote_code"):
        check_source(f"path:{model}")
    assert not sentinel.exists()


def test_pickled_checkpoint_is_refused(tmp_path, tiny_dir):
    import torch

    from prunebench.pruning.checkpoint import CheckpointError, load_pruned

    sentinel = tmp_path / "code-ran"
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))

    class Payload:  # unpickling this would run os.system
        def __reduce__(self):
            return os.system, (f"touch {sentinel}",)

    torch.save({"payload": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="has no .safetensors weights; pickled weights"):
        load_pruned(folder)
    assert not sentinel.exists()


def test_config_with_python_tags_is_refused_without_running_them(tmp_path, finished):
    workdir, good = finished
    sentinel = tmp_path / "code-ran"
    text = yaml.safe_dump({k: v for k, v in good.items() if k != "seed"}) + f"seed: !!python/object/apply:os.system ['touch {sentinel}']\n"
    configfile = tmp_path / "evil.yaml"
    configfile.write_text(text)
    result = run_snakemake(workdir, configfile, *PROFILE, check=False)
    assert result.returncode != 0
    assert not sentinel.exists()
