"""Pictures a walk starts from: the job format, validation, loading (the probe) and the fit rule."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib

import numpy as np
import pytest
import yaml
from PIL import Image

from raywalk import job_from_dict, load_job
from raywalk.core.job import Picture
from raywalk.core.kinds import Fit
from raywalk.core.picture import decode_picture, fit_picture
from raywalk.core.spec import job_from_dict as validate_only
from raywalk.errors import BAD_INPUT, BadInputError, JobError, PictureError

from builders import cli, make_job, picture, picture_job_data, write_picture, write_picture_job


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` and holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _animated_gif() -> bytes:
    out = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def _truncated_png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(picture(64, 64)).save(out, format="PNG")
    return out.getvalue()[:-200]


BAD = {
    "not an image": lambda p: p.write_bytes(b"just some text, not a picture"),
    "unreadable": lambda p: p.write_bytes(_truncated_png()),
    "0 pixels": lambda p: p.write_bytes(_png_header(0, 5)),
    "over the pixel limit": lambda p: p.write_bytes(_png_header(10_000, 10_000)),
    "animated gif": lambda p: p.write_bytes(_animated_gif()),
    "a directory": lambda p: p.mkdir(),
    "missing": lambda p: None,
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_picture_is_refused_by_plan_and_render_in_one_line(tmp_path, case):
    job = write_picture_job(tmp_path)
    bad = tmp_path / "images" / "a.png"
    bad.unlink()
    BAD[case](bad)
    out = tmp_path / "out"
    for args in (["plan", job], ["render", job, "--out", out]):
        result = cli(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == BAD_INPUT, (case, result.stdout, result.stderr)
        assert len(lines) == 1 and "images/a.png" in lines[0] and "walk.keyframes[0].image" in lines[0], lines
        assert not out.exists()


def test_a_picture_over_the_byte_limit_is_refused(tmp_path, monkeypatch):
    job = write_picture_job(tmp_path)
    monkeypatch.setattr("raywalk.jobfile.MAX_PICTURE_BYTES", 100)
    for args in (["plan", job], ["render", job, "--out", tmp_path / "out"]):
        result = cli(*args)
        assert result.returncode == BAD_INPUT and "more than the 100 bytes" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_loading_records_the_pictures_hash_and_size(tmp_path):
    job = load_job(write_picture_job(tmp_path, images=("images/a.png", None, "images/b.png"), strengths=(0.2, 0, 0.7)))
    a, b = job.pictures
    assert (a.width, a.height, b.width, b.height) == (96, 64, 64, 80)
    assert a.sha256 == hashlib.sha256((tmp_path / "images/a.png").read_bytes()).hexdigest()
    assert (a.strength, b.strength, a.fit) == (0.2, 0.7, Fit.CROP)
    assert job.picture_source(a) == str(tmp_path / "images/a.png")
    assert job.prompts[0] == "" and job.walk.keyframes[1].image is None


def test_a_manifests_job_data_is_not_probed_again(tmp_path):
    job = load_job(write_picture_job(tmp_path))
    (tmp_path / "images/a.png").unlink()  # the data records sha256, width and height: no file is read
    again = job_from_dict(job.to_dict(), source=job.source)
    assert again == job and again.fingerprint() == job.fingerprint()
    with pytest.raises(JobError, match="nothing here reads the picture"):
        validate_only({**picture_job_data()}, source=job.source)


def test_a_picture_at_a_uri_is_read_through_pyarrow(tmp_path):
    path = write_picture(tmp_path / "far" / "c.png", 32, 32)
    data = picture_job_data(images=(f"file://{path}", None))
    job = job_from_dict(data, source=str(tmp_path / "job.yaml"))
    assert job.pictures[0].width == 32 and job.picture_source(job.pictures[0]) == f"file://{path}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["walk"]["keyframes"][0].update(strength=1.5), "strength: must be at most 1"),
        (lambda d: d["walk"]["keyframes"][0].update(strength=-0.1), "strength: must be >= 0"),
        (lambda d: d["walk"]["keyframes"][0].update(fit="zoom"), "unknown fit 'zoom'"),
        (lambda d: d["walk"]["keyframes"][1].update(strength=0.3), "keyframes[1].strength: applies only with an image"),
        (lambda d: d["walk"]["keyframes"][0].clear(), 'prompts[0]: is empty: a prompt may be "" only'),
        (
            lambda d: d["walk"].update(init_image={"image": "images/b.png", "strength": 0.5}),
            "init_image or from keyframe images, not both",
        ),
        (lambda d: d["walk"]["keyframes"][0].update(sha256="ab"), "sha256, width and height together"),
    ],
)
def test_picture_fields_are_checked(tmp_path, change, message):
    write_picture_job(tmp_path)
    data = picture_job_data()
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(JobError, match=re.escape(message)):
        load_job(path)


@pytest.mark.parametrize(
    "walk",
    [
        {"kind": "interpolate", "frames": 6},
        {"kind": "grid", "size": 2},
        {"kind": "text_walk", "frames": 6},
        {"kind": "noise_circle", "frames": 6},
    ],
)
def test_every_walk_kind_takes_an_init_image(tmp_path, walk):
    write_picture_job(tmp_path)
    init = {"image": "images/b.png", "strength": 0.6, "fit": "pad"}
    data = picture_job_data(walk=walk, init_image=init)
    if walk["kind"] == "interpolate":
        data["prompts"] = ["a red fox", "a blue whale"]
    job = job_from_dict(data, source=str(tmp_path / "job.yaml"))
    assert job.pictures == (job.walk.init_image,) and job.walk.init_image.fit == Fit.PAD
    assert job.to_dict()["walk"]["init_image"]["strength"] == 0.6
    missing = {**data, "walk": {**data["walk"], "init_image": {"image": "images/b.png"}}}
    with pytest.raises(JobError, match="init_image.strength: missing"):
        job_from_dict(missing, source=str(tmp_path / "job.yaml"))


def test_a_text_job_keeps_its_data_and_fingerprint():
    job = make_job({"kind": "interpolate", "frames": 8, "keyframes": [{}, {"at": 7}]}, ["a", "b"])
    data = job.to_dict()
    assert "init_image" not in data["walk"] and all("image" not in k for k in data["walk"]["keyframes"])
    assert job.pictures == ()
    # the fingerprint of this job on main, before pictures existed
    assert job.fingerprint() == FINGERPRINT_BEFORE_PICTURES


FINGERPRINT_BEFORE_PICTURES = "84321d7c95f9f1e3522d0b94aaed0d822d7f715713b62421f557a701fdb958d9"


def test_a_repeated_picture_is_listed_once(tmp_path):
    job = load_job(write_picture_job(tmp_path, images=("images/a.png", None, "images/a.png"), strengths=(0.3, 0, 0.3)))
    assert len(job.pictures) == 1


# ---------------------------------------------------------------------------- decoding and fitting


def test_transparency_is_composited_on_black_and_exif_orientation_applied():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    pixels = decode_picture(out.getvalue(), "t.png")
    assert pixels.shape == (4, 6, 3) and pixels.dtype == np.uint8
    assert abs(int(pixels[0, 0, 0]) - 100) <= 1 and pixels[0, 0, 1:].tolist() == [0, 0]
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(picture(6, 4)).save(rotated, format="JPEG", exif=exif)
    assert decode_picture(rotated.getvalue(), "r.jpg").shape == (6, 4, 3)


def test_crop_fills_the_frame_and_cuts_the_overflow_equally():
    wide = picture(120, 60, border=4)  # 2:1 into a square: the left and right borders are cut off
    fitted = fit_picture(wide, 32, 32, Fit.CROP)
    assert fitted.shape == (32, 32, 3)
    red = (fitted[..., 0] > 200) & (fitted[..., 1] < 60) & (fitted[..., 2] < 60)
    assert red[0].all() and red[-1].all()  # the top and bottom borders remain
    assert not red[16, 8:24].any()  # the middle is the picture
    assert red[:, 0].mean() < 0.5  # the side borders were cut away


def test_pad_keeps_the_whole_picture_on_black():
    wide = picture(120, 60, border=4)
    fitted = fit_picture(wide, 32, 32, Fit.PAD)
    assert fitted.shape == (32, 32, 3)
    assert (fitted[:6] == 0).all() and (fitted[-6:] == 0).all()  # 32 x 16 picture centred: black above and below
    red = (fitted[..., 0] > 200) & (fitted[..., 1] < 60)
    assert red[10:22, 0].all() and red[10:22, -1].all()  # both side borders kept


def test_stretch_resizes_to_exactly_the_frame():
    wide = picture(120, 60, border=6)
    fitted = fit_picture(wide, 32, 48, Fit.STRETCH)
    assert fitted.shape == (48, 32, 3)
    red = (fitted[..., 0] > 200) & (fitted[..., 1] < 60)
    assert red[0].all() and red[-1].all() and red[:, 0].all() and red[:, -1].all()


def test_a_picture_of_the_frames_size_is_kept_as_it_is():
    same = picture(64, 48)
    for fit in Fit:
        assert (fit_picture(same, 64, 48, fit) == same).all()


def test_picture_to_dict_writes_what_is_recorded():
    assert Picture("a.png").to_dict() == {"image": "a.png", "strength": 0.0, "fit": "crop"}


def test_errors_name_the_picture_error():
    with pytest.raises(PictureError, match="x.png: not an image"):
        decode_picture(b"nope", "x.png")
    assert issubclass(PictureError, BadInputError)


# ---------------------------------------------------------------------------- the renderer's optional capability


def test_a_renderer_that_cannot_start_from_pictures_is_refused_at_plan(tmp_path):
    from raywalk.renderers.contract import renderer_starts_from_pictures

    assert renderer_starts_from_pictures("doubles:FakeRenderer")
    assert not renderer_starts_from_pictures("doubles:TextOnlyRenderer")
    job = write_picture_job(tmp_path, renderer="doubles:TextOnlyRenderer")
    result = cli("plan", job)
    assert result.returncode == BAD_INPUT and len(result.stderr.strip().splitlines()) == 1
    assert "cannot start from pictures (it has no encode_images)" in result.stderr
    text = tmp_path / "text.yaml"
    data = picture_job_data(images=(None, None), renderer="doubles:TextOnlyRenderer")
    text.write_text(yaml.safe_dump(data))
    assert cli("plan", text).returncode == 0  # a text-only job plans with it as before


def test_the_fake_renderer_starts_from_its_pictures_as_the_contract_says():
    from doubles import FakeRenderer

    renderer = FakeRenderer(width=64, height=64, steps=4)
    images = np.stack([picture(64, 64, seed=1), picture(64, 64, border=8, seed=2)])
    latents = renderer.encode_images(images)
    assert latents.shape == (2, 8, 8, 4) and latents.dtype == np.float32
    assert np.array_equal(latents, renderer.encode_images(images))
    texts = renderer.encode_text(["a", "b"])
    noise = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype(np.float32)
    plain = renderer.render(texts, noise)
    same = renderer.render(texts, noise, start_latents=latents, start_steps=np.array([0, 0]))
    assert np.array_equal(plain, same)  # step 0: the text-to-image frame, byte for byte
    late = renderer.render(texts, noise, start_latents=latents, start_steps=np.array([2, 4]))
    assert not np.array_equal(late[0], plain[0]) and not np.array_equal(late[1], plain[1])
    assert (late[1, :8, :, 0] > 200).all() and (late[1, :8, :, 1:] < 60).all()  # k = steps: the picture's red border
    other = renderer.render(texts, noise, start_latents=latents[::-1].copy(), start_steps=np.array([2, 4]))
    assert not np.array_equal(other[0], late[0])  # a frame depends on its own starting latent


def test_a_picture_in_an_object_store_is_probed_once_and_copied_into_the_run(s3_endpoint, tmp_path):
    from raywalk.exec.location import check_inputs, copy_inputs
    from raywalk.run.fs import filesystem
    from raywalk.run.manifest import new_manifest
    from raywalk.run.store import RunStore, picture_name

    source = s3_endpoint.uri(f"pictures-{tmp_path.name}/a.png")
    out = io.BytesIO()
    Image.fromarray(picture(40, 30)).save(out, format="PNG")
    fs, path = filesystem(source)
    with fs.open_output_stream(path) as stream:
        stream.write(out.getvalue())
    job = job_from_dict(picture_job_data(images=(source, None)), source=str(tmp_path / "job.yaml"))
    (found,) = job.pictures
    assert (found.width, found.height, found.sha256) == (40, 30, hashlib.sha256(out.getvalue()).hexdigest())
    store = RunStore(str(tmp_path / "run"), create=True)
    manifest = new_manifest(job)
    store.start_fresh(manifest)
    check_inputs(store, job)
    copy_inputs(store, job, manifest.run_id)
    assert picture_name(found) == f"pictures/{found.sha256}.png"
    assert store.read_bytes(picture_name(found)) == out.getvalue() and store.holds(picture_name(found), found.sha256)
