import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from methods.calibration import CalibrationSpec, calibration_windows  # noqa: E402
from methods.io import save_tensors  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
spec = CalibrationSpec.from_id(sm.wildcards.calib)
tokenizer = AutoTokenizer.from_pretrained(sm.input.model)
windows = calibration_windows(tokenizer, spec, "resources/data")
save_tensors(sm.output[0], {"input_ids": windows}, {"spec": spec.id, "description": spec.describe()})
print(f"{spec.describe()}: {tuple(windows.shape)}")
