"""Measuring memory: probes per device, and the start-up profile run that fits a MemoryModel."""

from .budget import DEFAULT_BUDGET_FRACTION, default_budget, working_budget
from .probes import CpuProbe, Measurement, MemoryProbe, NvmlCudaProbe, TorchCudaProbe, probe_for
from .profile import ProfileSamples, default_shapes, fit_profile, load_or_profile, model_file_key, profile_backend
from .signal import speech_bursts

__all__ = [
    "DEFAULT_BUDGET_FRACTION",
    "CpuProbe",
    "Measurement",
    "MemoryProbe",
    "NvmlCudaProbe",
    "ProfileSamples",
    "TorchCudaProbe",
    "default_budget",
    "default_shapes",
    "fit_profile",
    "load_or_profile",
    "model_file_key",
    "probe_for",
    "profile_backend",
    "speech_bursts",
    "working_budget",
]
