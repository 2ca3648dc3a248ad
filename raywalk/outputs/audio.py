"""Soundtracks: read an audio file, and its percussive onset envelope (the I/O edge of `raywalk.core.timing`).

WAV, FLAC (and what else libsndfile reads) go through soundfile; MP3 goes
through librosa, which decodes it with soundfile or audioread. Nothing here
knows about frames: `raywalk.core.timing` turns the envelope into per-frame
parameters, from arrays alone.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raywalk.errors import AudioError

MAX_AUDIO_BYTES = 1 << 30  # a soundtrack of at most 1 GiB (about 100 minutes of 16-bit 44.1 kHz stereo WAV)
ANALYSIS_RATE = 22_050  # Hz: librosa's default, ample for onsets
HOP = 512  # samples per envelope value: 43 values a second at ANALYSIS_RATE
ONSET_LATENCY = 0.75  # hops from a click to the peak of its onset strength (measured: 0.3 to 1.1, mean 0.7)


@dataclass(frozen=True)
class AudioInfo:
    """What a job records of its soundtrack: how long it plays and which file it is."""

    duration: float  # seconds
    sha256: str
    samplerate: int


def _is_mp3(path: Path) -> bool:
    return path.suffix.lower() == ".mp3"


def probe(path: str | Path) -> AudioInfo:
    """Duration (from the header, no decoding for WAV/FLAC), SHA-256 and sample rate of an audio file.

    Raises:
        AudioError: not a regular file of at most MAX_AUDIO_BYTES, or not audio that can be read.
    """
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise AudioError(f"{path}: not a regular file")
        if info.st_size > MAX_AUDIO_BYTES:
            raise AudioError(f"{path}: {info.st_size} bytes, more than the {MAX_AUDIO_BYTES} a soundtrack may have")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if _is_mp3(path):
            import librosa

            samplerate = int(librosa.get_samplerate(str(path)))
            duration = float(librosa.get_duration(path=str(path)))
        else:
            import soundfile

            header = soundfile.info(str(path))
            samplerate, duration = int(header.samplerate), header.frames / header.samplerate
    except Exception as exc:  # soundfile, audioread and librosa each raise their own
        raise AudioError(f"{path}: not audio raywalk can read (WAV, FLAC, MP3): {exc}") from None
    if not duration > 0:
        raise AudioError(f"{path}: holds no sound (0 seconds)")
    return AudioInfo(duration=duration, sha256=digest.hexdigest(), samplerate=samplerate)


def load(path: str | Path, samplerate: int = ANALYSIS_RATE) -> np.ndarray:
    """The file's samples, mixed down to mono float32 and resampled to `samplerate`.

    Raises:
        AudioError: the file cannot be decoded.
    """
    path = Path(path)
    try:
        if _is_mp3(path):
            import librosa

            samples, _ = librosa.load(str(path), sr=samplerate, mono=True)
            return np.asarray(samples, dtype=np.float32)
        import librosa
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile, audioread and librosa each raise their own
        raise AudioError(f"{path}: cannot decode: {exc}") from None
    mono = data.mean(axis=1)
    if rate != samplerate:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=samplerate)
    return np.asarray(mono, dtype=np.float32)


def percussive_envelope(samples: np.ndarray, samplerate: int = ANALYSIS_RATE, hop: int = HOP) -> np.ndarray:
    """Onset strength of the percussive part of `samples`: value j describes the time j · hop / samplerate.

    Harmonic/percussive separation (librosa's median-filtering HPSS) keeps
    drums and clicks and drops sustained notes, so a held chord does not push
    the walk; the onset strength (spectral flux of the mel spectrogram, rising
    energy only) then peaks where a beat starts. Measured on clicks, that peak
    comes ONSET_LATENCY hops after the click (librosa centres its frames, but
    the flux of frame j compares it with frame j - 1); the envelope is read
    that much later, so value j is the onset at j · hop / samplerate
    (tests/test_timing.py checks the steps land on the clicks' frames).
    """
    import librosa

    spectrum = librosa.stft(np.asarray(samples, dtype=np.float32), hop_length=hop)
    _, percussive = librosa.decompose.hpss(spectrum)
    mel = librosa.feature.melspectrogram(S=np.abs(percussive) ** 2, sr=samplerate)
    flux = librosa.onset.onset_strength(S=librosa.power_to_db(mel, ref=np.max), sr=samplerate, hop_length=hop)
    index = np.arange(len(flux), dtype=np.float64)
    return np.interp(index + ONSET_LATENCY, index, flux.astype(np.float64))


def envelope(path: str | Path) -> tuple[np.ndarray, float]:
    """The percussive onset envelope of an audio file and its rate (values per second).

    Pass both to `raywalk.core.timing.frame_energy`.

    Raises:
        AudioError: the file cannot be decoded.
    """
    return percussive_envelope(load(path)), ANALYSIS_RATE / HOP
