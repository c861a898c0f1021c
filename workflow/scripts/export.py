import sys
import time

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402

from prunebench.export.gguf import ExportError, write_gguf  # noqa: E402
from prunebench.export.hf import write_hf  # noqa: E402
from prunebench.export.llamacpp import quantize  # noqa: E402
from prunebench.io import atomic_dir, write_json  # noqa: E402
from prunebench.pruning.checkpoint import content_hash, load_pruned  # noqa: E402
from prunebench.sources.models import source_gguf  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
model = load_pruned(sm.input.model)
record = {"checkpoint": sm.input.model, "content_hash": content_hash(sm.input.model), "files": {}, "seconds": {}}
with atomic_dir(sm.output[0]) as out:
    f16 = out / "model-f16.gguf"
    start = time.perf_counter()
    try:
        record["gguf"] = {"status": "written", **write_gguf(model, f16, source_gguf=source_gguf(sm.params.source),
                                                           dtype="f16")}
    except ExportError as err:  # a structure llama.cpp cannot express: recorded, the suite goes on
        record["gguf"] = {"status": "not expressible", "reason": str(err)}
    record["seconds"]["f16"] = time.perf_counter() - start
    if f16.is_file():
        for fmt in sm.params.formats:
            if fmt != "f16":  # llama.cpp's own quantizer, from the f16 file as its users do
                start = time.perf_counter()
                quantize(f16, out / f"model-{fmt}.gguf", fmt)
                record["seconds"][fmt] = time.perf_counter() - start
        if "f16" not in sm.params.formats:
            f16.unlink()
    record["hf"] = write_hf(model, sm.input.model, out / "hf")
    record["files"] = {p.name: p.stat().st_size for p in sorted(out.glob("*.gguf"))}
    write_json(out / "export.json", record)
    print(record)
