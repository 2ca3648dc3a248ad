"""Validation of a job's plain data, one module per group of sections; no I/O (the loader probes files)."""

from raywalk.core.validate.fields import PictureProbe, Probe, SoundInfo
from raywalk.core.validate.job import Validator

__all__ = ["PictureProbe", "Probe", "SoundInfo", "Validator"]
