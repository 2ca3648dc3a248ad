"""Job files: valid ones load, every invalid one fails with one line naming file, field and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from raywalk import JobError, load_job
from raywalk.cli import main

JOBS = Path(__file__).resolve().parent.parent / "jobs"

VALID = {
    "name": "t",
    "prompts": ["a dog", "a bowl of fruit"],
    "walk": {"kind": "interpolate", "frames": 10},
    "model": {"width": 128, "height": 128, "steps": 3},
}


def with_(**changes) -> dict:
    """VALID with `section.key=value` changes (None deletes)."""
    data = yaml.safe_load(yaml.safe_dump(VALID))
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return data


def write(tmp_path: Path, data, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


BAD = [
    # (job data or raw text, field named in the error, reason fragment)
    (with_(walk__frmes=10), "walk.frmes", "unknown key"),
    (with_(modle={"steps": 3}), "modle", "unknown key"),
    (with_(walk__frames="ten"), "walk.frames", "must be an integer"),
    (with_(walk__frames=0), "walk.frames", "must be >= 1"),
    (with_(walk__frames=None), "walk.frames", "missing"),
    (with_(walk__kind="spiral"), "walk.kind", "unknown kind 'spiral'"),
    (with_(walk={"kind": "grid", "size": 3}), "prompts", "needs exactly 4 prompts, got 2"),
    (with_(prompts=["a dog", "  "]), "prompts[1]", "is empty"),
    (with_(prompts=[]), "prompts", "non-empty list"),
    (with_(prompts=["a dog", 3]), "prompts[1]", "must be a string"),
    (with_(model__steps=0), "model.steps", "must be >= 1"),
    (with_(model__guidance_scale=-1), "model.guidance_scale", "must be >= 0"),
    (with_(model__width=100), "model.width", "multiple of 64"),
    (with_(model__height=0), "model.height", "must be >= 64"),
    (with_(model__batch_size=0), "model.batch_size", "must be >= 1"),
    (with_(model__precision="half"), "model.precision", "unknown precision"),
    (with_(model__renderer="not a path"), "model.renderer", "import path"),
    (with_(chunking__chunk_size=0), "chunking.chunk_size", "must be >= 1"),
    (with_(noise__kind="pink"), "noise.kind", "unknown kind 'pink'"),
    (with_(walk__easing="bounce"), "walk.easing", "unknown easing 'bounce'"),
    (with_(walk__step_size=0.1), "walk.step_size", "does not apply to an interpolate walk"),
    (with_(noise__kind="circle"), "noise.kind", "circle noise"),
    (with_(outputs={"gif": {"fps": 0}}), "outputs.gif.fps", "must be >= 1"),
    (with_(outputs={"grid": {}}), "outputs.grid", "needs a grid walk"),
    (with_(outputs={"webm": {}}), "outputs.webm", "unknown key"),
    ("walk: [unclosed", "job.yaml", "not valid YAML"),
    ("- just\n- a list\n", "job: must be a mapping", "got list"),
    (with_(model__width=100), "model.width", "multiple of 64 (the latent is width/8 and the UNet halves it"),
    (with_(walk__frames=10**23), "walk.frames", "must be at most 1,000,000, got 100000000000000000000000"),
    (with_(prompts=["a", "b", "c", "d"], walk={"kind": "grid", "size": 100000}), "walk.size", "at most 1,000"),
    (with_(name="x" * 300), "name", "at most 100 letters"),
    (with_(name="a\x00b"), "name", "at most 100 letters"),
    (with_(name="../escape"), "name", "at most 100 letters"),
    (with_(name="two words"), "name", "at most 100 letters"),
    (with_(prompts=["a dog", "x" * 3000]), "prompts[1]", "is 3000 characters long"),
    (with_(outputs={"gif": {"resize": [100000, 100000]}}), "outputs.gif.resize", "at most 8192 pixels"),
    (with_(outputs={"contact_sheet": {"tile": 1000000}}), "outputs.contact_sheet.tile", "at most 1,024"),
    (
        with_(walk__frames=1000000, outputs={"contact_sheet": {"every": 1, "tile": 512, "columns": 200}}),
        "outputs.contact_sheet",
        "megapixel image",
    ),
    (with_(outputs={"gif": {"fps": 100000}}), "outputs.gif.fps", "at most 240"),
    (with_(model__steps=10**6), "model.steps", "at most 1,000"),
    (with_(model__width=65536), "model.width", "at most 4,096"),
    (with_(model__batch_size=10**5), "model.batch_size", "at most 256"),
    (with_(model__guidance_scale=1e9), "model.guidance_scale", "at most 100"),
    (with_(noise__seed=2**70), "noise.seed", "at most"),
    (with_(chunking__chunk_size=10**9), "chunking.chunk_size", "at most 100,000"),
    ("walk:\n  frames: 5\n  frames: 6\nprompts: [a, b]\n", "job.yaml", "key 'frames' is given twice"),
    ("model: {renderer: a:B}\nmodel: {renderer: c:D}\nprompts: [a, b]\n", "job.yaml", "key 'model' is given twice"),
    (
        "prompts: [a, b]\nwalk: {frames: 3}\nmodel:\n  options: {x: " + "[" * 20000 + "]" * 20000 + "}\n",
        "job.yaml",
        "nested more than 32 levels deep",
    ),
    ("", "job", "file is empty"),
]


@pytest.mark.parametrize("data,field,reason", BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_bad_job_files_fail_with_one_line(tmp_path, data, field, reason):
    path = write(tmp_path, data)
    with pytest.raises(JobError) as err:
        load_job(path)
    message = str(err.value)
    assert message.startswith(str(path)) and field in message and reason in message
    assert "\n" not in message


ALIAS_BOMB = (
    "prompts: [a, b]\nwalk: {frames: 3}\nmodel:\n  options:\n    a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    import resource
    import time

    path = write(tmp_path, ALIAS_BOMB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(JobError, match="expands to more than 100000 values"):
        load_job(path)
    assert time.perf_counter() - started < 5  # a bound, not a benchmark: the expansion would take minutes
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: never expanded
    shallow = write(tmp_path, ALIAS_BOMB.split("    a2:")[0], "ok.yaml")  # 9 x 9 values: fine
    assert len(load_job(shallow).model.options["a1"]) == 9


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "huge"])
def test_only_regular_job_files_of_bounded_size_are_read(tmp_path, kind):
    import os

    if kind == "fifo":
        path = tmp_path / "job.yaml"
        os.mkfifo(path)  # opening it would block forever
        reason = "not a regular file"
    elif kind == "device":
        path, reason = Path("/dev/zero"), "not a regular file"
    elif kind == "directory":
        path, reason = tmp_path, "a directory"
    else:
        path = write(tmp_path, "# padding\n" * 200_000 + "prompts: [a, b]\nwalk: {frames: 3}\n")
        reason = "more than the 1048576 a job file may have"
    with pytest.raises(JobError, match=reason) as err:
        load_job(path)
    assert str(err.value).startswith(f"{path}: cannot read job file")


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(JobError, match="no-such.yaml: cannot read job file"):
        load_job(tmp_path / "no-such.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(JobError, match="binary.yaml: cannot read job file"):
        load_job(binary)


def test_cli_plan_rejects_a_bad_job_with_status_2_and_writes_nothing(tmp_path):
    path = write(tmp_path, with_(model__steps=-3))
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "model.steps: must be >= 1, got -3" in result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_defaults_and_derived_values(tmp_path):
    job = load_job(write(tmp_path, VALID))
    assert job.num_frames == 10 and job.latent_shape == (16, 16, 4)
    assert job.noise.kind == "fixed" and job.noise.seed == 12345
    assert job.model.renderer == "raywalk.kerascv:KerasCVRenderer"
    assert [list(job.chunk_frames(c)) for c in range(job.num_chunks)] == [list(range(10))]


def test_fingerprint_follows_what_makes_the_frames(tmp_path):
    base = load_job(write(tmp_path, VALID, "a.yaml"))
    rechunked = load_job(write(tmp_path, with_(chunking={"chunk_size": 3}), "b.yaml"))
    reseeded = load_job(write(tmp_path, with_(noise={"seed": 1}), "c.yaml"))
    assert base.fingerprint() == rechunked.fingerprint() != reseeded.fingerprint()


@pytest.mark.parametrize("path", sorted(JOBS.glob("*.yaml")), ids=lambda p: p.stem)
def test_round_trip_through_a_dict(path):
    from raywalk import job_from_dict

    job = load_job(path)
    again = job_from_dict(job.to_dict(), source="manifest")
    assert again == job and again.fingerprint() == job.fingerprint()


def test_every_tutorial_job_loads_with_its_settings():
    jobs = {p.stem: load_job(p) for p in JOBS.glob("*.yaml")}
    tutorial = {
        "dog-to-fruit-5",
        "dog-to-fruit-150",
        "four-way-grid",
        "four-way-grid-varying-noise",
        "eiffel-walk",
        "cows-circle",
    }
    assert tutorial <= set(jobs)
    assert jobs["dog-to-fruit-5"].num_frames == 5 and jobs["dog-to-fruit-5"].model.steps == 50
    assert jobs["dog-to-fruit-150"].num_frames == 150 and jobs["dog-to-fruit-150"].model.batch_size == 3
    assert jobs["four-way-grid"].num_frames == 36 and jobs["four-way-grid"].noise.kind == "fixed"
    assert jobs["four-way-grid-varying-noise"].noise.kind == "per_frame"
    assert jobs["eiffel-walk"].walk.step_size == 0.005 and jobs["eiffel-walk"].walk.direction == "ones"
    assert jobs["cows-circle"].walk.mode == "tutorial"
    assert all(job.outputs.files for job in jobs.values())


SPELLED_OUT = """\
name: shared
prompts: [a dog, a bowl of fruit]
walk: {kind: interpolate, frames: 10}
model:
  width: 128
  height: 128
  steps: 4
  guidance_scale: 5.0
  options: {version: v1.4}
"""
MERGED = {
    "inline mapping": """\
name: shared
prompts: [a dog, a bowl of fruit]
walk: {kind: interpolate, frames: 10}
model:
  <<: {width: 128, height: 128, steps: 2, guidance_scale: 5.0}
  steps: 4
  options: {version: v1.4}
""",
    "anchor and alias": """\
name: shared
prompts: [a dog, a bowl of fruit]
walk: {kind: interpolate, frames: 10}
model:
  <<: [&size {width: 128, height: 128}, &look {steps: 2, guidance_scale: 5.0, width: 256}, *size]
  steps: 4
  options:
    <<: {version: v1.4}
""",
}


@pytest.mark.parametrize("text", MERGED.values(), ids=MERGED.keys())
def test_anchors_and_merge_keys_load_and_plan_as_the_spelled_out_job(tmp_path, text):
    spelled, merged = write(tmp_path, SPELLED_OUT, "spelled.yaml"), write(tmp_path, text, "merged.yaml")
    assert load_job(merged) == load_job(spelled)
    assert load_job(merged).fingerprint() == load_job(spelled).fingerprint()
    plans = [CliRunner().invoke(main, ["plan", str(p)]) for p in (spelled, merged)]
    assert [r.exit_code for r in plans] == [0, 0], plans[1].output
    assert plans[0].stdout == plans[1].stdout.replace("merged.yaml", "spelled.yaml")  # the plan names its file


def test_a_key_written_twice_is_still_refused_where_merge_keys_are_used(tmp_path):
    for model in ("{<<: {width: 128}, steps: 3, steps: 4}", "{<<: {width: 128, width: 64}, steps: 3}"):
        path = write(tmp_path, f"prompts: [a, b]\nwalk: {{frames: 3}}\nmodel: {model}\n")
        with pytest.raises(JobError, match=r"key '(steps|width)' is given twice") as err:
            load_job(path)
        assert "\n" not in str(err.value)


def test_an_alias_bomb_through_merge_keys_is_refused_before_it_expands(tmp_path):
    bomb = (
        "prompts: [a, b]\nwalk: {frames: 3}\nmodel:\n  options:\n    m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5}\n"
        + "".join(f"    m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}], k{i}: {i}}}\n" for i in range(1, 10))
    )
    with pytest.raises(JobError, match="expands to more than 100000 values") as err:
        load_job(write(tmp_path, bomb))
    assert "\n" not in str(err.value)
    shallow = write(tmp_path, bomb.split("    m2:")[0], "ok.yaml")  # merged, not expanded: 6 keys
    assert load_job(shallow).model.options["m1"] == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "k1": 1}
    one = write(tmp_path, bomb.split("    m1:")[0] + "    m1: {<<: *m0, a: 9}\n", "one.yaml")
    assert load_job(one).model.options["m1"] == {"a": 9, "b": 2, "c": 3, "d": 4, "e": 5}
