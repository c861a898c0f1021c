"""Calibration: seeded windows from a calibration corpus, and the dense model's activation
statistics over them; `Calibration` is everything a pruning method may read. Knows no method."""
from .activations import ActivationStats
from .windows import Calibration, CalibrationSpec, calibration_windows

__all__ = ["ActivationStats", "Calibration", "CalibrationSpec", "calibration_windows"]
