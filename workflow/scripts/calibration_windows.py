import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import data_root, start_job  # noqa: E402
from transformers import AutoConfig, AutoTokenizer  # noqa: E402

from prunebench.calibration import CalibrationSpec, calibration_windows  # noqa: E402
from prunebench.io import save_tensors  # noqa: E402
from prunebench.sources.bos import read_back  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
spec = CalibrationSpec.from_id(sm.wildcards.calib)
tokenizer = AutoTokenizer.from_pretrained(sm.input.model)
model_type = AutoConfig.from_pretrained(sm.input.model).model_type
windows = calibration_windows(tokenizer, spec, data_root(sm), sm.params.bos, model_type)
bos = {"setting": sm.params.bos, "windows": read_back(windows[:, 0].tolist(), tokenizer.bos_token_id)}
save_tensors(sm.output[0], {"input_ids": windows}, {"spec": spec.id, "description": spec.describe(), "bos": bos})
print(f"{spec.describe()}: {tuple(windows.shape)}, BOS {bos}")
