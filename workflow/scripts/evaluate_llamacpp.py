import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
import torch  # noqa: E402
from common import data_root, start_job  # noqa: E402
from transformers import AutoConfig, AutoTokenizer  # noqa: E402

from prunebench.evaluation.deployed import llamacpp_perplexity  # noqa: E402
from prunebench.evaluation.items import write_items  # noqa: E402
from prunebench.io import read_json, write_json  # noqa: E402
from prunebench.provenance import Stopwatch, environment  # noqa: E402
from prunebench.sources.bos import encode, resolve_bos  # noqa: E402
from prunebench.sources.datasets import perplexity_text  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
settings, watch = sm.params.perplexity, Stopwatch()
export = Path(sm.input.export)
record = read_json(export / "export.json")
tokenizer = AutoTokenizer.from_pretrained(sm.input.model)
policy = resolve_bos(sm.params.bos, tokenizer, AutoConfig.from_pretrained(sm.input.model).model_type)
texts = {name: torch.tensor(encode(tokenizer, perplexity_text(name, data_root(sm)), policy))
         for name in settings["datasets"]}
results, items = {}, []
for fmt in sm.params.formats:
    gguf = export / f"model-{fmt}.gguf"
    if not gguf.is_file():  # not expressible in llama.cpp (export.json says why)
        continue
    for name, ids in texts.items():
        with watch(f"{name}:{fmt}"):
            result = llamacpp_perplexity(gguf, ids, settings["seqlen"], settings.get("max_windows"), f"{name}:{fmt}",
                                         sm.threads, tokenizer.bos_token_id, policy == "every-window")
        items.append(result.pop("items"))
        results.setdefault(fmt, {})[name] = result
        print(fmt, name, result["ppl"])
write_items(sm.output.per_item, items)
write_json(sm.output.metrics, {
    "model": sm.wildcards.model, "row": sm.wildcards.row, "gguf": record["gguf"], "hf": record["hf"],
    "files": record["files"], "perplexity": results, "bos": policy,
    "provenance": {"export": str(export), "content_hash": record["content_hash"], "cpu_s": dict(watch.cpu),
                   "wall_s": dict(watch.times), **environment()},
})
