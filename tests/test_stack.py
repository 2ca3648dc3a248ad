"""A run is rendered with one model stack (issue 18): each worker's stack is compared with the run's before
it renders, the manifest records every stack used, index rows carry theirs, status and the report list them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from raywalk.cli import main
from raywalk.core.stack import Stack, describe_difference, first_difference
from raywalk.errors import StackChangeError
from raywalk.report.page import build_report
from raywalk.report.status import run_status
from raywalk.run.manifest import Manifest, ManifestError, admit_stack, new_manifest
from raywalk.run.store import RunStore

from builders import copy_run, cpu_worker_args, run, start, write_job
from builders import fake_job as make_job

RUN_STACK = Stack(
    packages={"raywalk": "0.6.0", "keras": "3.14.0", "keras-cv": "0.9.0", "tensorflow": "2.21.0"},
    backend="tensorflow",
    precision="float32",
    device="cpu",
)


def other(**changes) -> Stack:
    packages = {**RUN_STACK.packages, **changes.pop("packages", {})}
    fields = {"backend": RUN_STACK.backend, "precision": RUN_STACK.precision, "device": RUN_STACK.device}
    return Stack(packages=packages, **{**fields, **changes})


# ---------------------------------------------------------------------------- pure


def test_the_first_differing_entry_is_named_with_both_versions():
    newer = other(packages={"keras": "3.15.1", "tensorflow": "2.22.0"}, precision="float16")
    assert first_difference(newer, RUN_STACK) == ("keras", "3.15.1", "3.14.0")  # packages first, in order
    assert describe_difference(newer, RUN_STACK) == "keras 3.15.1 on the workers, 3.14.0 in the run"
    assert first_difference(other(precision="float16"), RUN_STACK) == ("precision", "float16", "float32")
    assert first_difference(other(device="NVIDIA H100"), RUN_STACK) == ("device", "NVIDIA H100", "cpu")
    hub = other(packages={"keras-hub": "0.30.0"})
    assert describe_difference(RUN_STACK, hub) == "keras-hub none on the workers, 0.30.0 in the run"
    assert first_difference(other(), RUN_STACK) is None and describe_difference(other(), RUN_STACK) == ""


def test_the_stack_id_is_short_stable_and_derived():
    reordered = Stack(dict(reversed(list(RUN_STACK.packages.items()))), "tensorflow", "float32", "cpu")
    assert RUN_STACK.id == reordered.id and len(RUN_STACK.id) == 12 and int(RUN_STACK.id, 16) >= 0
    assert other(packages={"keras": "3.15.1"}).id != RUN_STACK.id
    data = RUN_STACK.to_json()
    assert Stack.from_json({**data, "id": "forged000000"}) == RUN_STACK  # the id is recomputed, never trusted


def test_admitting_a_stack_adopts_refuses_or_records_an_allowed_change():
    job = make_job(frames=4)
    fresh = admit_stack(new_manifest(job), RUN_STACK, allow=False)
    assert fresh.stack == RUN_STACK and [(r.stack, r.allowed) for r in fresh.stacks] == [(RUN_STACK, False)]
    assert admit_stack(fresh, other(), allow=False) is fresh  # the run's own stack changes nothing
    newer = other(packages={"keras": "3.15.1"})
    with pytest.raises(StackChangeError) as refused:
        admit_stack(fresh, newer, allow=False)
    assert refused.value.exit_code == 2
    assert str(refused.value) == (
        "the workers' stack differs from the run's: keras 3.15.1 on the workers, 3.14.0 in the run "
        "(--allow-stack-change renders anyway)"
    )
    with pytest.raises(StackChangeError, match="^worker 3's stack differs from the run's: keras 3.15.1 on worker 3,"):
        admit_stack(fresh, newer, allow=False, who="worker 3")
    changed = admit_stack(fresh, newer, allow=True)
    assert changed.stack == newer and [(r.stack, r.allowed) for r in changed.stacks] == [
        (RUN_STACK, False),
        (newer, True),
    ]
    joined = admit_stack(fresh, newer, allow=True, who="worker 3")  # a later worker's: recorded, not the run's
    assert joined.stack == RUN_STACK and len(joined.stacks) == 2
    again = Manifest.from_json(json.loads(json.dumps(changed.to_json())), "manifest.json")
    assert again.stack == newer and again.stacks == changed.stacks


def test_manifests_without_a_stack_still_read_and_adopt_the_first_workers():
    data = new_manifest(make_job(frames=4)).to_json()
    for key in ("stack", "stacks"):
        del data[key]
    old = Manifest.from_json(data, "manifest.json")
    assert old.stack is None and old.stacks == ()
    assert admit_stack(old, RUN_STACK, allow=False).stack == RUN_STACK  # never refused
    with pytest.raises(ManifestError, match="stack record is not valid: precision is int"):
        Manifest.from_json({**data, "stack": {**RUN_STACK.to_json(), "precision": 16}}, "manifest.json")


def test_a_worker_renders_nothing_for_a_run_that_does_not_record_its_stack(tmp_path, worker):
    store = RunStore(str(tmp_path / "run"), create=True)
    job = make_job(frames=4, chunk_size=2)
    w = worker(job, store.uri)
    manifest = admit_stack(start(store, job, worker), other(), allow=False)  # a run of another stack
    store.write_manifest(manifest)
    with pytest.raises(StackChangeError, match="^this worker's stack differs from the run's: "):
        w.render_chunk(0, [0, 1], 1)
    assert not list((tmp_path / "run" / "frames").glob("*.png")) and store.read_index().num_rows == 0
    store.write_manifest(admit_stack(manifest, w.stack, allow=True))  # the driver admitted it: it renders
    w.render_chunk(0, [0, 1], 1)
    assert store.read_index()["stack"].to_pylist() == [w.stack.id] * 2


# ---------------------------------------------------------------------------- on Ray


@pytest.fixture(scope="module")
def stacked_run(tmp_path_factory, ray_connected):
    """A finished 12-frame run (chunks of 4, one CPU worker) and the cluster's address."""
    tmp = tmp_path_factory.mktemp("stacked")
    outcome, _ = run(write_job(tmp), tmp / "out")
    assert outcome.complete
    return tmp / "out", ray_connected["address"]


def copy_with_frames_missing(run_dir: Path, to: Path, frames: range) -> Path:
    copy_run(run_dir, to)
    for frame in frames:
        (to / "frames" / f"{frame:06d}.png").unlink()
    return to


def set_stack(out: Path, stack: Stack) -> None:
    """Make the run look rendered on `stack`: its manifest's stack records and its index rows' stack ids."""
    manifest = json.loads((out / "manifest.json").read_text())
    for record in (manifest["stack"], *manifest["stacks"]):
        record.update(stack.to_json())
    (out / "manifest.json").write_text(json.dumps(manifest))
    for path in (out / "index").glob("*.parquet"):
        table = pq.read_table(path)
        column = pa.array([stack.id] * table.num_rows, pa.string())
        pq.write_table(table.set_column(table.column_names.index("stack"), "stack", column), path)


def test_the_manifest_and_the_rows_record_the_workers_stack(stacked_run):
    out, _ = stacked_run
    manifest = RunStore(str(out)).require_manifest()
    assert manifest.stack is not None and manifest.stack.device == "cpu"
    assert {"raywalk", "keras"} <= set(manifest.stack.packages)
    assert [(r.stack, r.allowed) for r in manifest.stacks] == [(manifest.stack, False)]
    assert set(RunStore(str(out)).read_index()["stack"].to_pylist()) == {manifest.stack.id}


def test_a_resume_on_another_stack_is_refused_then_allowed_and_recorded(stacked_run, tmp_path):
    out = copy_with_frames_missing(stacked_run[0], tmp_path / "out", range(8, 12))
    workers = RunStore(str(out)).require_manifest().stack
    assert workers is not None
    older = Stack({**workers.packages, "keras": "3.14.0"}, workers.backend, workers.precision, workers.device)
    set_stack(out, older)
    manifest_before = (out / "manifest.json").read_bytes()
    files_before = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    args = ["resume", str(out), *cpu_worker_args(stacked_run[1])]

    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.strip() == (
        f"raywalk: error: the workers' stack differs from the run's: keras {workers.packages['keras']} on the "
        "workers, 3.14.0 in the run (--allow-stack-change renders anyway)"
    )
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files_before  # lock released too
    assert (out / "manifest.json").read_bytes() == manifest_before
    assert RunStore(str(out)).read_lock() is None

    allowed = CliRunner().invoke(main, [*args, "--allow-stack-change"])
    assert allowed.exit_code == 0, allowed.output
    manifest = RunStore(str(out)).require_manifest()
    assert manifest.stack == workers
    assert [(r.stack, r.allowed) for r in manifest.stacks] == [(older, False), (workers, True)]
    rows = RunStore(str(out)).read_index().to_pylist()
    rerendered = {(r["frame"], r["stack"]) for r in rows if r["frame"] >= 8}  # the deleted frames' old rows too
    assert rerendered == {(f, s.id) for f in range(8, 12) for s in (older, workers)}
    text = run_status(str(out))
    assert f"stacks    2 recorded, rendering with {workers.id}" in text
    assert f"  {older.id}      8 frames  first " in text and "keras 3.14.0" in text
    assert f"  {workers.id}      4 frames  allowed change " in text
    report = build_report(RunStore(str(out)))
    assert "Model stacks" in report and older.id in report and workers.id in report


def test_a_run_made_before_stacks_adopts_the_first_workers_and_resumes(stacked_run, tmp_path):
    out = copy_with_frames_missing(stacked_run[0], tmp_path / "out", range(0, 4))
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("stack", "stacks"):
        del manifest[key]
    (out / "manifest.json").write_text(json.dumps(manifest))
    for path in (out / "index").glob("*.parquet"):  # index files as raywalk wrote them before: no stack column
        pq.write_table(pq.read_table(path).drop_columns(["stack"]), path)

    result = CliRunner().invoke(main, ["resume", str(out), *cpu_worker_args(stacked_run[1])])
    assert result.exit_code == 0, result.output
    record = RunStore(str(out)).require_manifest()
    assert record.stack is not None and [r.allowed for r in record.stacks] == [False]
    rows = {(r["frame"], r["stack"]) for r in RunStore(str(out)).read_index().to_pylist()}
    assert rows == {(f, None) for f in range(12)} | {(f, record.stack.id) for f in range(4)}  # old rows read null
    assert "rendered before stacks were recorded" in run_status(str(out))


def test_workers_of_two_stacks_are_refused_and_render_nothing_of_their_own(ray_connected, tmp_path):
    claims = tmp_path / "claims"
    claims.mkdir()
    job = write_job(tmp_path, renderer="doubles:MixedStackRenderer", options={"claim_dir": str(claims)})
    out = tmp_path / "out"
    args = ["--address", ray_connected["address"], "--workers", "2", "--gpus-per-worker", "0"]
    result = CliRunner().invoke(main, ["render", str(job), "--out", str(out), *args, "--cpus-per-worker", "0.5"])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("raywalk: error: worker ")
    assert "'s stack differs from the run's: precision float" in message
    assert "float16" in message and "float32" in message and message.endswith("(--allow-stack-change renders anyway)")
    manifest = RunStore(str(out)).require_manifest()
    assert manifest.stack is not None and len(manifest.stacks) == 1
    assert set(RunStore(str(out)).read_index()["stack"].to_pylist()) <= {manifest.stack.id}
    assert RunStore(str(out)).read_lock() is None
