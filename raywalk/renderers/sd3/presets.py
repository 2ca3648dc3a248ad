"""Stable Diffusion 3 presets as data, and preset directories staged for clusters without internet.

A preset is a KerasHub preset name (`PRESETS`), a download handle (kaggle://, hf://,
modelscope://, gs://) or a local directory `stage_preset` filled and closed with a SHA-256
manifest (`MANIFEST`, written last), which `verify_preset` checks before anything loads it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from raywalk.errors import RendererError
from raywalk.hashing import sha256_file
from raywalk.renderers.sd3.kerashub_api import kerashub, python_preprocessing
from raywalk.renderers.weights import unreachable

log = logging.getLogger(__name__)

PRESETS = (
    "stable_diffusion_3_medium",
    "stable_diffusion_3.5_medium",
    "stable_diffusion_3.5_large",
    "stable_diffusion_3.5_large_turbo",
)
HANDLE_SCHEMES = ("kaggle://", "hf://", "modelscope://", "gs://")
# Where each kind of handle downloads from (KerasHub's presets are kaggle:// handles).
DOWNLOAD_HOSTS = dict(
    zip(
        HANDLE_SCHEMES, ("www.kaggle.com", "huggingface.co", "www.modelscope.cn", "storage.googleapis.com"), strict=True
    )
)
MANIFEST = "raywalk-preset.sha256"  # written last by `stage_preset`: "<sha256>  <relative path>" lines
RANDOM_SEED = 0


def is_directory(source: str) -> bool:
    """Whether `source` (a preset name, a handle or a directory) names a local preset directory."""
    return not source.startswith(HANDLE_SCHEMES) and source not in PRESETS


def verify_preset(directory: str | Path) -> Path:
    """The staged preset `directory`, after checking every file its manifest lists by SHA-256.

    Raises:
        RendererError: no such directory, no manifest (staging never finished), or a file
            missing or different from what was staged (a partial or corrupt copy).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise RendererError(f"preset directory {str(directory)!r} does not exist")
    manifest = directory / MANIFEST
    hint = f"stage it with raywalk.renderers.sd3.stage_preset({str(directory)!r}, PRESET)"
    if not manifest.is_file():
        raise RendererError(f"preset directory {str(directory)!r} has no {MANIFEST} (staging never finished); {hint}")
    problems = []
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = directory / name
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise RendererError(f"{manifest}: malformed line {line[:80]!r}")
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} has the wrong SHA-256 (corrupt or partial copy)")
    if problems:
        raise RendererError(f"preset directory {str(directory)!r}: {'; '.join(problems)}; {hint}")
    return directory


def _preset_source(preset: str) -> Path:
    """A local directory holding `preset`: itself if it is one, else KerasHub's download of it."""
    if Path(preset).expanduser().is_dir():
        return Path(preset).expanduser()
    handle = _handle(preset)
    if handle.startswith("kaggle://"):
        import kagglehub

        return Path(kagglehub.model_download(handle.removeprefix("kaggle://")))
    if handle.startswith("hf://"):
        import huggingface_hub

        return Path(huggingface_hub.snapshot_download(handle.removeprefix("hf://")))
    raise RendererError(
        f"cannot stage {preset!r}: only KerasHub presets, kaggle:// and hf:// handles "
        "and local directories can be staged"
    )


def _handle(preset: str) -> str:
    """The download handle of a KerasHub preset name, or `preset` itself if it is a handle."""
    if preset.startswith(HANDLE_SCHEMES):
        return preset
    if preset not in PRESETS:
        raise RendererError(f"unknown Stable Diffusion 3 preset {preset!r} (choose from {', '.join(PRESETS)})")
    import keras_hub

    return str(keras_hub.models.StableDiffusion3Backbone.presets[preset]["kaggle_handle"])


def stage_preset(directory: str | Path, preset: str) -> list[Path]:
    """Copy `preset` (a KerasHub preset name, a kaggle:// or hf:// handle, or a local preset
    directory) into `directory` and write its SHA-256 manifest last, for clusters without internet.

    A directory already staged with a good manifest is kept as it is. Files are copied under
    temporary names and renamed, then the manifest is written atomically, so an interrupted
    staging leaves no manifest and `verify_preset` refuses the directory. Returns the staged files.

    Raises:
        RendererError: the preset cannot be found or downloaded.
    """
    directory = Path(directory).expanduser()
    try:
        verify_preset(directory)
        return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    except RendererError:
        pass
    try:
        source = _preset_source(preset)
    except RendererError:
        raise
    except Exception as e:  # kagglehub's and huggingface_hub's own errors: no network, no such model
        raise RendererError(f"cannot download preset {preset!r}: {type(e).__name__}: {e}") from e
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)
    lines, staged = [], []
    for path in sorted(p for p in source.rglob("*") if p.is_file() and p.name != MANIFEST):
        name = path.relative_to(source)
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(path, partial)
        os.replace(partial, target)
        lines.append(f"{sha256_file(target)}  {name.as_posix()}\n")
        staged.append(target)
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False) as f:
        f.writelines(lines)
    os.replace(f.name, directory / MANIFEST)
    return staged


def source_notes(source: str, weights: str) -> list[str]:
    """What this machine cannot check of the preset `source` that `weights` loads: a note per source.

    A staged directory here is verified file by file; one not here is a note. A preset name or
    handle needs its download host to answer within `weights.PROBE_TIMEOUT_S`, else a note with the fix.

    Raises:
        RendererError: a staged preset directory here with files missing or wrong.
    """
    if is_directory(source):
        if not Path(source).expanduser().is_dir():
            return [f"preset directory {source!r} is not on this machine"]
        verify_preset(source)
        return []
    host = next((h for scheme, h in DOWNLOAD_HOSTS.items() if source.startswith(scheme)), DOWNLOAD_HOSTS["kaggle://"])
    if why := unreachable(host):
        return [
            f"weights: {weights} needs {source} from {host}, which this machine cannot reach ({why}); for"
            f" a cluster without internet, run `raywalk weights stage DIR --preset {source}` on a machine with"
            " internet, then set `weights: DIR`"
        ]
    return []


def load_preset(
    source: str, preset: str, image_shape: tuple[int, int, int], dtype: str, random: bool
) -> tuple[Any, Any]:
    """(backbone, preprocessor) of the preset `source` (a name, a handle or a staged directory, verified
    first), at `image_shape`; with `random`, the preset's architecture with seeded random weights.

    Raises:
        RendererError: a staged directory fails its check, or KerasHub cannot load the preset.
    """
    keras_hub = kerashub()
    if is_directory(source):
        source = str(verify_preset(source))
    if random:
        log.warning("Stable Diffusion 3 %s with RANDOM WEIGHTS: the images are noise (smoke tests only)", preset)
        import keras

        keras.utils.set_random_seed(RANDOM_SEED)
    try:
        backbone = keras_hub.models.StableDiffusion3Backbone.from_preset(
            source, image_shape=image_shape, dtype=dtype, load_weights=not random
        )
        preprocessor = keras_hub.models.StableDiffusion3TextToImagePreprocessor.from_preset(source)
    except Exception as e:  # KerasHub's, kagglehub's and h5py's errors: no network, no such preset, bad file
        raise RendererError(f"cannot load Stable Diffusion 3 preset {source!r}: {type(e).__name__}: {e}") from e
    return backbone, python_preprocessing(preprocessor)
