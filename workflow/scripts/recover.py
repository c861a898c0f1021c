import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import data_root, start_job  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from prunebench.provenance import Stopwatch, environment, peak_memory_mb  # noqa: E402
from prunebench.pruning.checkpoint import load_pruned, save_pruned, verify_checkpoint  # noqa: E402
from prunebench.recovery.lora import recover  # noqa: E402
from prunebench.sources.datasets import alpaca_examples  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
watch, settings = Stopwatch(), sm.params.recovery
with watch("load"):
    info = verify_checkpoint(sm.input.model)
    model = load_pruned(sm.input.model, device=sm.params.device, verify=False)
    tokenizer = AutoTokenizer.from_pretrained(sm.input.model)
with watch("recover"):
    model, log = recover(model, tokenizer, alpaca_examples(data_root(sm)), settings, sm.params.seed)
print(f"LoRA: validation loss {log['val_loss']}, {watch.times}")
info = {k: v for k, v in info.items() if k not in ("format", "layers", "files")}
save_pruned(model, tokenizer, sm.output[0], dict(info, recovery={
    "method": "lora", "settings": settings,
    "data": f"{settings['dataset']} ({log['train_examples']} train / {log['val_examples']} validation examples)",
    "substitutes": settings.get("substitutes"), "log": log, "wall_s": watch.times,
    "peak_memory_mb": peak_memory_mb(), "environment": environment()}))
