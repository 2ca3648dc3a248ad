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
    (with_(walk__step_size=0.1), "walk.step_size", "does not apply to a interpolate walk"),
    (with_(noise__kind="circle"), "noise.kind", "circle noise"),
    (with_(outputs={"gif": {"fps": 0}}), "outputs.gif.fps", "must be >= 1"),
    (with_(outputs={"grid": {}}), "outputs.grid", "needs a grid walk"),
    (with_(outputs={"webm": {}}), "outputs.webm", "unknown key"),
    ("walk: [unclosed", "job.yaml", "not valid YAML"),
    ("- just\n- a list\n", "", "must be a mapping"),
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
    tutorial = {"dog-to-fruit-5", "dog-to-fruit-150", "four-way-grid", "four-way-grid-varying-noise",
                "eiffel-walk", "cows-circle"}
    assert tutorial <= set(jobs)
    assert jobs["dog-to-fruit-5"].num_frames == 5 and jobs["dog-to-fruit-5"].model.steps == 50
    assert jobs["dog-to-fruit-150"].num_frames == 150 and jobs["dog-to-fruit-150"].model.batch_size == 3
    assert jobs["four-way-grid"].num_frames == 36 and jobs["four-way-grid"].noise.kind == "fixed"
    assert jobs["four-way-grid-varying-noise"].noise.kind == "per_frame"
    assert jobs["eiffel-walk"].walk.step_size == 0.005 and jobs["eiffel-walk"].walk.direction == "ones"
    assert jobs["cows-circle"].walk.mode == "tutorial"
    assert all(job.outputs.files for job in jobs.values())
