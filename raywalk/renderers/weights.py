"""KerasCV's weight files and the CLIP vocabulary: the registry, verifying, staging and downloading them.

KerasCV fetches its weights (about 4 GB) and the CLIP BPE vocabulary with
`keras.utils.get_file` into ``$KERAS_HOME/datasets`` on first use. Clusters
without internet get them from a weights directory staged in advance
(`raywalk weights stage DIR`, then ``weights: DIR`` in the job). Nothing here
imports TensorFlow or KerasCV: the driver and `raywalk plan` use it.
"""

from __future__ import annotations

import http.client
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from raywalk.errors import RendererError
from raywalk.hashing import BLOCK, sha256_blocks, sha256_file

DOWNLOAD_TIMEOUT_S = 30  # per socket operation: a stalled download fails instead of hanging
PROBE_TIMEOUT_S = 5.0  # how long a renderer's `check_resources` waits for a download host


@dataclass(frozen=True)
class WeightFile:
    """One file KerasCV fetches with `keras.utils.get_file`, with the SHA-256 it checks."""

    name: str
    url: str
    sha256: str


_HF_V1 = "https://huggingface.co/fchollet/stable-diffusion/resolve/main/"
_HF_V2 = "https://huggingface.co/ianstenbit/keras-sd2.1/resolve/main/"
VOCAB = WeightFile(
    "bpe_simple_vocab_16e6.txt.gz",
    "https://github.com/openai/CLIP/blob/main/clip/bpe_simple_vocab_16e6.txt.gz?raw=true",
    "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
)
DECODER = WeightFile(
    "kcv_decoder.h5", _HF_V1 + "kcv_decoder.h5", "ad350a65cc8bc4a80c8103367e039a3329b4231c2469a1093869a345f55b1962"
)
# KerasCV's VAE encoder (`ImageEncoder`, the same for v1.4 and v2.1): needed only by jobs that start from pictures.
IMAGE_ENCODER = WeightFile(
    "vae_encoder.h5", _HF_V1 + "vae_encoder.h5", "c60fb220a40d090e0f86a6ab4c312d113e115c87c40ff75d11ffcf380aab7ebb"
)
# version -> (text encoder, diffusion model, decoder, vocabulary, image encoder): what a weights directory holds.
WEIGHT_FILES: dict[str, tuple[WeightFile, ...]] = {
    "v1.4": (
        WeightFile(
            "kcv_encoder.h5",
            _HF_V1 + "kcv_encoder.h5",
            "4789e63e07c0e54d6a34a29b45ce81ece27060c499a709d556c7755b42bb0dc4",
        ),
        WeightFile(
            "kcv_diffusion_model.h5",
            _HF_V1 + "kcv_diffusion_model.h5",
            "8799ff9763de13d7f30a683d653018e114ed24a6a819667da4f5ee10f9e805fe",
        ),
        DECODER,
        VOCAB,
        IMAGE_ENCODER,
    ),
    "v2.1": (
        WeightFile(
            "text_encoder_v2_1.h5",
            _HF_V2 + "text_encoder_v2_1.h5",
            "985002e68704e1c5c3549de332218e99c5b9b745db7171d5f31fcd9a6089f25b",
        ),
        WeightFile(
            "diffusion_model_v2_1.h5",
            _HF_V2 + "diffusion_model_v2_1.h5",
            "c31730e91111f98fe0e2dbde4475d381b5287ebb9672b1821796146a25c5132d",
        ),
        DECODER,
        VOCAB,
        IMAGE_ENCODER,
    ),
}


def problem(path: Path, file: WeightFile) -> str | None:
    """Why `path` is not `file` (missing or wrong SHA-256), or None if it is."""
    if not path.is_file():
        return f"{file.name} is missing"
    if sha256_file(path) != file.sha256:
        return f"{file.name} has the wrong SHA-256 (corrupt or partial copy)"
    return None


def needed_files(version: str, pictures: bool = False) -> tuple[WeightFile, ...]:
    """The files of `version` a render loads: the image encoder only when the job starts from `pictures`, so a
    weights directory staged before image jobs existed still serves every other job."""
    return tuple(f for f in WEIGHT_FILES[version] if pictures or f != IMAGE_ENCODER)


def verify_weights(directory: str | Path, version: str, files: tuple[WeightFile, ...] | None = None) -> dict[str, Path]:
    """The weight `files` of `version` in `directory` (default `needed_files(version)`), by name, after checking
    each SHA-256.

    Raises:
        RendererError: the directory does not exist, or files are missing or wrong (all named, with the fix).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise RendererError(f"weights directory {str(directory)!r} does not exist")
    wanted = needed_files(version) if files is None else files
    paths = {f.name: directory / f.name for f in wanted}
    problems = [p for f in wanted if (p := problem(paths[f.name], f))]
    if problems:
        raise RendererError(
            f"weights directory {str(directory)!r} ({version}): {'; '.join(problems)};"
            f" stage it with `raywalk weights stage {directory} --version {version}`"
        )
    return paths


def keras_cache() -> Path:
    """Where `keras.utils.get_file` keeps KerasCV's downloads (``$KERAS_HOME/datasets``)."""
    base = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    if not os.access(base if base.exists() else base.parent, os.W_OK):  # Keras creates it on import
        base = Path("/tmp/.keras")
    return base / "datasets"


def vocabulary(directory: Path | None = None) -> Path:
    """The verified CLIP vocabulary: from `directory` when it is on this machine, else from KerasCV's
    cache, downloading it there (as KerasCV would) when the cache lacks it.

    Raises:
        RendererError: `directory` holds a bad copy, or no copy can be found or downloaded; the message
            says where to copy the file.
    """
    if directory is not None and directory.is_dir():
        path = directory / VOCAB.name
        if why := problem(path, VOCAB):
            raise RendererError(
                f"weights directory {str(directory)!r}: {why};"
                f" copy {VOCAB.name} there or run `raywalk weights stage {directory}`"
            )
        return path
    cached = keras_cache() / VOCAB.name
    if problem(cached, VOCAB) is None:
        return cached
    return download(VOCAB, cached, progress=False)


def stage_weights(directory: str | Path, version: str = "v1.4", progress: bool = True) -> list[Path]:
    """Put the weight files of `version` (the image encoder of picture jobs included) and the CLIP vocabulary
    into `directory` and verify them, for clusters without internet.

    Files already there with the right SHA-256 are kept; the others are copied
    from KerasCV's download cache when it holds a good copy, else downloaded.
    Returns the paths of the staged files.

    Raises:
        RendererError: an unknown version, or a file that cannot be downloaded (the message says what to copy
            where) or arrives with the wrong SHA-256.
    """
    if version not in WEIGHT_FILES:
        raise RendererError(f"unknown Stable Diffusion version {version!r} (choose from {', '.join(WEIGHT_FILES)})")
    directory = Path(directory).expanduser()
    return [
        target if problem(target := directory / file.name, file) is None else download(file, target, progress)
        for file in WEIGHT_FILES[version]
    ]


def download(file: WeightFile, target: Path, progress: bool = True) -> Path:
    """Write `file` to `target` from KerasCV's cache when it holds a good copy, else from its URL; verified,
    and renamed into place only when whole. Returns `target`.

    Raises:
        RendererError: the URL cannot be read (the message says where to copy the file instead), or the
            copy has the wrong SHA-256.
    """
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")  # concurrent stagers never share one
    try:
        with (
            _open_source(file, target) as (source, total),
            partial.open("wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=file.name, disable=not progress) as bar,
        ):

            def written() -> Iterator[bytes]:
                """The source's blocks, each written to `partial` as it is hashed: the file is read once."""
                while block := source.read(BLOCK):
                    out.write(block)
                    bar.update(len(block))
                    yield block

            digest, _ = sha256_blocks(written())
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as e:
        partial.unlink(missing_ok=True)  # a connection that dropped mid-download
        raise RendererError(_cannot_download(file, target, e)) from e
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if digest != file.sha256:
        partial.unlink()
        raise RendererError(f"{file.name} from {file.url} has the wrong SHA-256; nothing staged for it")
    os.replace(partial, target)
    return target


def _cannot_download(file: WeightFile, target: Path, error: BaseException) -> str:
    places = " or ".join(dict.fromkeys([str(target.parent), str(keras_cache())]))
    return (
        f"cannot download {file.name} from {file.url} ({getattr(error, 'reason', error)}); without internet"
        f" here, copy {file.name}"
        f" (SHA-256 {file.sha256[:12]}...) into {places}, e.g. from a directory staged with"
        " `raywalk weights stage DIR` on a machine with internet"
    )


@contextmanager
def _open_source(file: WeightFile, target: Path) -> Iterator[tuple[IO[bytes], int | None]]:
    """A readable stream and its size for `file`: the verified cached copy if any, else the download."""
    cached = keras_cache() / file.name
    if cached != target and problem(cached, file) is None:
        with cached.open("rb") as stream:
            yield stream, cached.stat().st_size
        return
    try:
        response = urllib.request.urlopen(file.url, timeout=DOWNLOAD_TIMEOUT_S)
    except OSError as e:
        raise RendererError(_cannot_download(file, target, e)) from e
    with response:
        length = response.headers.get("Content-Length")
        yield response, int(length) if length else None


def unreachable(host: str) -> str | None:
    """Why `host` does not answer HTTPS within `PROBE_TIMEOUT_S` (through any proxy urllib uses), or None.

    The probe runs in a daemon thread so that a name lookup, which no socket timeout bounds, cannot stall it.
    """
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(
                urllib.request.Request(f"https://{host}/", method="HEAD"), timeout=PROBE_TIMEOUT_S
            ).close()
            outcome.append(None)
        except urllib.error.HTTPError:  # an answer, whatever its status: the host is reachable
            outcome.append(None)
        except (OSError, ValueError) as e:
            outcome.append(str(getattr(e, "reason", e)) or type(e).__name__)

    thread = threading.Thread(target=probe, name=f"probe {host}", daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    return outcome[0] if outcome else f"no answer in {PROBE_TIMEOUT_S:g} s"


def resource_notes(directory: Path | None, weights: str, version: str) -> list[str]:
    """What a KerasCV renderer would load, checked without loading it: a weights `directory` here has every
    file's SHA-256 checked (one not here is a note); ``weights: download`` with files missing from KerasCV's
    cache needs their host to answer within `PROBE_TIMEOUT_S`, else a note with the fix.

    Raises:
        RendererError: a weights directory with files missing or wrong (named, with the fix).
    """
    if directory is not None:
        if not directory.is_dir():
            return [f"weights directory {str(directory)!r} is not on this machine"]
        verify_weights(directory, version)
        return []
    if weights != "download":
        return []
    missing = [f for f in needed_files(version) if not (keras_cache() / f.name).is_file()]
    notes = []
    for host in dict.fromkeys(urllib.parse.urlsplit(f.url).hostname or f.url for f in missing):
        if why := unreachable(host):
            notes.append(
                f"weights: download needs {host}, which this machine cannot reach ({why}); for a cluster without"
                " internet, run `raywalk weights stage DIR` on a machine with internet, then set `weights: DIR`"
            )
    return notes
