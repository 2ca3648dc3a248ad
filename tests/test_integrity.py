"""A run directory that never lies (issue #10): what resume may trust, tested against real storage.

Each test names the invariant of `raywalk.run` it checks. Renders here run
the real `RenderWorker` in this process (a stub for Ray's runtime context, the
test renderer), so the index is written exactly as on a cluster.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import raywalk.run.publish as publish_module
import raywalk.run.retry as retry_module
from raywalk.core.job import Job
from raywalk.errors import RunError, RunLocationError, StoreError
from raywalk.run.fs import RunFS
from raywalk.run.manifest import LEGACY_RUN_ID, ManifestError, new_manifest
from raywalk.run.store import KEYFRAMES, RunStore

from builders import FINGERPRINT, RUN, png, start, write_chunk
from builders import fake_job as make_job


def render_missing(store: RunStore, job: Job, worker, chunks: set[int] | None = None) -> list[int]:
    """What the driver does on resume: the missing frames of the current run, in `job`'s chunks (only
    `chunks`, if given), one render_chunk call each. Returns the frames it rendered."""
    missing = store.missing_frames(job.num_frames, store.require_manifest().run_id)
    by_chunk: dict[int, list[int]] = {}
    for frame in missing:
        by_chunk.setdefault(frame // job.chunking.chunk_size, []).append(frame)
    w = worker(job, store.uri)
    rendered = []
    for chunk, frames in sorted(by_chunk.items()):
        if chunks is None or chunk in chunks:
            w.render_chunk(chunk, frames, 1)
            rendered += frames
    return rendered


# ---------------------------------------------------------------------------- 1. rows of the current run only


def test_rows_of_an_earlier_run_never_count(uri, worker):
    store = RunStore(uri, create=True)
    job = make_job(frames=8)
    first = start(store, job, worker)
    render_missing(store, job, worker)
    assert store.missing_frames(8, first.run_id) == []
    rows = store.read_index()
    assert set(rows["run_id"].to_pylist()) == {first.run_id}
    assert set(rows["fingerprint"].to_pylist()) == {job.fingerprint()}
    assert all(w > 0 for w in rows["written"].to_pylist())

    # Same frame count, same PNG names: before run ids, every old frame counted as done for the new job.
    other = make_job(frames=8, prompts=("a green frog", "a grey owl"), name="other")
    second = start(store, other, worker)
    assert second.run_id != first.run_id
    assert store.missing_frames(8, second.run_id) == list(range(8))
    assert store.missing_frames(8) == list(range(8))  # the manifest's run id by default
    assert render_missing(store, other, worker) == list(range(8))
    assert store.missing_frames(8) == []


def test_rows_from_before_run_ids_read_as_legacy(tmp_path):
    store = RunStore(tmp_path / "run")
    data = png(0)
    store.write_frame(0, data)
    # An index file as raywalk wrote it before run ids: no run_id, fingerprint or written columns.
    table = pa.table(
        {
            "frame": [0],
            "file": ["frames/000000.png"],
            "sha256": [hashlib.sha256(data).hexdigest()],
            "bytes": [len(data)],
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    store.write_bytes("index/chunk-000000.parquet", sink.getvalue())
    legacy = dict(new_manifest(make_job(frames=1)).to_json())
    del legacy["run_id"]
    store.write_bytes("manifest.json", json.dumps(legacy).encode())
    assert store.require_manifest().run_id == LEGACY_RUN_ID
    assert store.missing_frames(1) == []
    assert store.read_index(["frame", "run_id"]).to_pylist() == [{"frame": 0, "run_id": LEGACY_RUN_ID}]
    assert store.missing_frames(1, "another-run") == [0]


# ---------------------------------------------------------------------------- 2. append-only index


def test_rechunked_rerender_keeps_every_good_row(uri, worker):
    """The issue's case: a finished 24-frame run with chunks of 5 loses frames 5, 9 and 17; rendering them
    again with chunks of 6 must leave the run complete. Merging into chunk files of the new numbering
    dropped rows of frames 10 and 11, which were in the old chunk 2 only."""
    store = RunStore(uri, create=True)
    job = make_job(chunk_size=5)
    manifest = start(store, job, worker)
    render_missing(store, job, worker)
    assert store.missing_frames(24) == []
    before = {f: store.read_frame(f) for f in range(24)}
    for frame in (5, 9, 17):
        store.delete(f"frames/{frame:06d}.png")
    assert store.missing_frames(24) == [5, 9, 17]

    assert render_missing(store, make_job(chunk_size=6), worker) == [5, 9, 17]
    assert store.missing_frames(24, manifest.run_id) == []
    assert store.missing_frames(24, manifest.run_id, verify=True) == []
    assert {f: store.read_frame(f) for f in range(24)} == before
    names = sorted(i.base_name for i in store.files.list("index"))
    assert len(names) == 5 + 3 and all(n.startswith("chunk-") and n.endswith(".parquet") for n in names)


def test_half_rendered_run_converges_in_one_render_with_another_chunk_size(uri, worker):
    store = RunStore(uri, create=True)
    job = make_job(chunk_size=5)
    start(store, job, worker)
    render_missing(store, job, worker, chunks={0, 2, 4})  # frames 0-4, 10-14, 20-23, then the driver died
    assert store.missing_frames(24) == [*range(5, 10), *range(15, 20)]
    assert render_missing(store, make_job(chunk_size=6), worker) == [*range(5, 10), *range(15, 20)]
    assert store.missing_frames(24) == []


# ---------------------------------------------------------------------------- 3. --force fences first; repair


def test_force_fences_the_old_run_off_before_deleting_anything(uri, worker, monkeypatch):
    store = RunStore(uri, create=True)
    job = make_job(frames=12)
    old = start(store, job, worker)
    render_missing(store, job, worker)
    store.write_failure(1, {"error": "boom"})
    store.write_output("walk.gif", b"GIF89a whole", old.run_id)
    store.write_output("preview/walk.gif", b"GIF89a partial")
    assert store.output_ok("walk.gif", old.run_id)

    new = new_manifest(make_job(frames=4, name="walk"))

    def storage_dies(self: RunFS, subdir: str) -> None:
        raise StoreError("storage died")

    with monkeypatch.context() as m:
        m.setattr(RunFS, "delete_dir", storage_dies)
        with pytest.raises(StoreError, match="storage died"):
            store.start_fresh(new)
    # Interrupted right after the manifest: the old run's rows and outputs no longer count.
    assert store.require_manifest().run_id == new.run_id
    assert store.missing_frames(4) == [0, 1, 2, 3] and not store.output_ok("walk.gif", new.run_id)

    store.start_fresh(new)
    left = [n for n in _all_objects(store) if not n.endswith("/")]  # S3 directory markers aside
    assert left == ["frames/000000.png", "frames/000001.png", "frames/000002.png", "frames/000003.png", "manifest.json"]
    assert store.read_failures() == {} and store.read_index().num_rows == 0


def test_adopt_repairs_a_damaged_manifest_without_rerendering(uri, worker):
    store = RunStore(uri, create=True)
    job = make_job(frames=10, chunk_size=5)
    manifest = start(store, job, worker)
    render_missing(store, job, worker)
    store.write_bytes("manifest.json", b'{"job": {"name": "wa')  # a write cut short
    with pytest.raises(ManifestError, match="damaged"):
        store.read_manifest()

    repaired = store.adopt(job)
    assert repaired.run_id == manifest.run_id and store.require_manifest() == repaired
    assert store.missing_frames(10) == []
    assert store.read_keyframes() is None  # re-encoded by the next render, not trusted blindly

    other = make_job(frames=10, prompts=("a green frog", "a grey owl"), name="other")
    store.write_bytes("manifest.json", b"[]")
    assert store.adopt(other).run_id != manifest.run_id
    assert store.missing_frames(10) == list(range(10))


# ---------------------------------------------------------------------------- 4. outputs published whole


def _all_objects(store: RunStore) -> list[str]:
    infos = store.fs.get_file_info(pafs.FileSelector(store.root, recursive=True, allow_not_found=True))
    return sorted(i.path.removeprefix(store.root + "/") for i in infos if i.type == pafs.FileType.File)


def test_pyarrow_still_completes_an_interrupted_s3_upload(s3_endpoint):
    """Why outputs go through a temporary key (apache/arrow#40502): if pyarrow ever stops publishing
    the partial object, this fails and the workaround can be reconsidered."""
    store = RunStore(s3_endpoint.uri(f"integrity/naive-{time.time_ns()}"))
    with pytest.raises(KeyboardInterrupt), store.fs.open_output_stream(store.files.path("walk.mp4")) as out:
        for _ in range(3):
            out.write(b"x" * (8 << 20))
        raise KeyboardInterrupt
    assert store.fs.get_file_info(store.files.path("walk.mp4")).size == 3 * (8 << 20)


def test_an_interrupted_output_upload_publishes_nothing(s3_endpoint, monkeypatch):
    store = RunStore(s3_endpoint.uri(f"integrity/upload-{time.time_ns()}"))
    store.write_output("walk.mp4", b"an older, whole output", RUN)
    assert store.output_ok("walk.mp4", RUN)

    def three_blocks_then_ctrl_c(path: str, block: int = 0):
        for _ in range(3):
            yield b"x" * (8 << 20)
        raise KeyboardInterrupt

    monkeypatch.setattr(publish_module, "file_blocks", three_blocks_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt), store.local_output("walk.mp4", RUN) as path, open(path, "wb") as out:
        out.write(b"x" * (30 << 20))
    assert store.read_bytes("walk.mp4") == b"an older, whole output"  # never the truncated upload
    assert not store.output_ok("walk.mp4", RUN)  # so resume assembles again
    assert _all_objects(store) == ["walk.mp4"]  # no temporary object left behind, no record

    with pytest.raises(KeyboardInterrupt), store.local_output("new.gif", RUN) as path, open(path, "wb") as out:
        out.write(b"x")
    assert not store.exists("new.gif") and not store.output_ok("new.gif", RUN)


def test_output_ok_checks_the_size_and_the_run(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.local_output("walk.gif", RUN) as path, open(path, "wb") as out:
        out.write(b"GIF89a" + b"\0" * 100)
    record = store.output_record("walk.gif")
    assert record["bytes"] == 106 and record["run_id"] == RUN
    assert record["sha256"] == hashlib.sha256(b"GIF89a" + b"\0" * 100).hexdigest()
    assert store.output_ok("walk.gif", RUN) and not store.output_ok("walk.gif", "run-b")
    (tmp_path / "run" / "walk.gif").write_bytes(b"GIF89a")  # replaced behind raywalk's back
    assert not store.output_ok("walk.gif", RUN)
    assert not store.output_ok("walk.mp4", RUN)  # never published


# ---------------------------------------------------------------------------- 5. retries against real faults


@pytest.fixture
def faults(s3_faults, monkeypatch):
    """The fault-injecting S3 front with no faults planned (and none left for the next test), quick retries."""
    monkeypatch.setattr(retry_module, "RETRY_BACKOFF", 0.01)
    s3_faults.fail()
    yield s3_faults
    s3_faults.fail()


def test_transient_errors_are_retried_through_real_503s(faults):
    store = RunStore(faults.uri(f"integrity/faults-{time.time_ns()}"))
    faults.fail(first=3)
    store.write_bytes("a.bin", b"payload")
    assert faults.injected == 3
    faults.fail(first=3)
    assert store.read_bytes("a.bin") == b"payload" and faults.injected == 3
    faults.fail(first=3, status=500, code="InternalError")
    write_chunk(store, 0, [0, 1, 2])
    assert faults.injected == 3
    faults.fail(first=3)
    assert store.missing_frames(4, RUN) == [3]  # a listing and index reads
    assert faults.injected == 3
    faults.fail(every=7)  # every 7th request (no single call makes 7), across a whole round of the run's calls
    write_chunk(store, 1, [3, 4, 5])
    store.delete("a.bin")
    store.write_output("walk.gif", b"GIF89a", RUN)
    assert store.missing_frames(6, RUN) == [] and not store.exists("a.bin") and store.output_ok("walk.gif", RUN)
    assert faults.injected >= 4 and faults.requests >= 7 * faults.injected


def test_the_retry_budget_is_bounded(faults, monkeypatch):
    store = RunStore(faults.uri(f"integrity/budget-{time.time_ns()}"))
    monkeypatch.setattr(retry_module, "RETRY_ATTEMPTS", 3)
    faults.fail(first=10)
    with pytest.raises(StoreError, match=r"SLOW_DOWN.*\(tried 3 times\)") as err:
        store.write_bytes("a.bin", b"payload")
    assert faults.injected == 3 and "\n" not in str(err.value)


def test_permanent_errors_fail_at_once_in_one_line(s3_endpoint, faults):
    started = time.monotonic()
    with pytest.raises(RunLocationError) as err:
        RunStore(f"s3://no-such-bucket/run?endpoint_override={s3_endpoint.endpoint}&scheme=http")
    assert "no-such-bucket" in str(err.value) and "\n" not in str(err.value)
    store = RunStore(faults.uri(f"integrity/denied-{time.time_ns()}"))
    faults.fail(first=5, status=403, code="AccessDenied")
    with pytest.raises(StoreError, match="ACCESS_DENIED") as err:
        store.write_bytes("a.bin", b"payload")
    assert faults.injected == 1 and "tried" not in str(err.value) and "\n" not in str(err.value)
    faults.fail()
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------------------- 6. damage is repaired, not fatal


def test_a_damaged_index_file_counts_as_missing_rows_and_is_named(uri, worker, caplog):
    store = RunStore(uri, create=True)
    job = make_job(frames=15, chunk_size=5)
    start(store, job, worker)
    render_missing(store, job, worker)
    chunk1 = next(i.base_name for i in store.files.list("index") if i.base_name.startswith("chunk-000001-"))
    raw = store.read_bytes(f"index/{chunk1}")
    store.write_bytes(f"index/{chunk1}", raw[: len(raw) // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="raywalk.run"):
        assert store.missing_frames(15) == [5, 6, 7, 8, 9]
        assert store.damaged == [f"index/{chunk1}"]
        assert store.missing_frames(15) == [5, 6, 7, 8, 9]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and chunk1 in warnings[0] and "missing" in warnings[0]
    assert store.read_index().num_rows == 10
    assert render_missing(store, job, worker) == [5, 6, 7, 8, 9]  # resume re-renders them
    assert store.missing_frames(15) == []


def test_garbage_failure_records_are_ignored_with_a_warning(tmp_path, caplog):
    """(A garbage lock.json counts as no lock: tests/test_lock.py.)"""
    store = RunStore(tmp_path / "run", create=True)
    store.write_failure(1, {"error": "boom"})
    store.write_bytes("failures/chunk-000002.json", b"{not json")
    with caplog.at_level(logging.WARNING, logger="raywalk.run"):
        assert store.read_failures() == {1: {"error": "boom"}}
    assert "failures/chunk-000002.json is damaged" in caplog.text


def test_keyframes_that_do_not_match_are_refused(uri, worker, caplog):
    store = RunStore(uri, create=True)
    job = make_job(frames=4, chunk_size=2)
    manifest = start(store, job, worker)
    good = store.read_bytes(KEYFRAMES)
    assert store.read_keyframes(manifest.keyframes_sha256) is not None
    with caplog.at_level(logging.WARNING, logger="raywalk.run"):
        store.write_bytes(KEYFRAMES, good[: len(good) // 2])
        assert store.read_keyframes(manifest.keyframes_sha256) is None
        assert store.read_keyframes() is None  # truncated: unreadable even without a hash to match
        other = io.BytesIO()
        np.savez(other, _array=np.ones((2, 77, 768), np.float32))
        store.write_bytes(KEYFRAMES, other.getvalue())
        assert store.read_keyframes(manifest.keyframes_sha256) is None
        store.delete(KEYFRAMES)
        assert store.read_keyframes(manifest.keyframes_sha256) is None
    assert "is damaged" in caplog.text and "does not match the manifest" in caplog.text and "is missing" in caplog.text

    store.write_bytes(KEYFRAMES, other.getvalue())
    with pytest.raises(RunError, match="not the manifest's keyframes") as err:
        worker(job, store.uri).render_chunk(0, [0, 1], 1)
    assert "\n" not in str(err.value) and store.read_index().num_rows == 0 and not store.exists("frames/000000.png")
    store.write_bytes(KEYFRAMES, good)
    worker(job, store.uri).render_chunk(0, [0, 1], 1)
    assert store.missing_frames(4) == [2, 3]


def test_a_worker_of_a_displaced_driver_renders_nothing(tmp_path, worker):
    store = RunStore(tmp_path / "run", create=True)
    job = make_job(frames=4, chunk_size=2)
    start(store, job, worker)
    stale = worker(job, store.uri)
    start(store, make_job(frames=4, prompts=("a green frog", "a grey owl"), name="other"), worker)  # --force
    with pytest.raises(RunError, match=r"now holds another job \('other'\)"):
        stale.render_chunk(0, [0, 1], 1)
    assert store.read_index().num_rows == 0


# ---------------------------------------------------------------------------- 7. bad locations fail fast


@pytest.mark.parametrize("uri", ["", "   ", "\n"])
def test_an_empty_location_is_refused(uri):
    with pytest.raises(RunLocationError, match="empty"):
        RunStore(uri)


def test_a_file_is_not_a_run_location(tmp_path, s3_endpoint):
    (tmp_path / "out.txt").write_text("a file")
    for uri in (tmp_path / "out.txt", tmp_path / "out.txt" / "run"):
        with pytest.raises(RunLocationError, match="is a file") as err:
            RunStore(uri)
        assert "\n" not in str(err.value)
    store = RunStore(s3_endpoint.uri(f"integrity/file-{time.time_ns()}"))
    store.write_bytes("object", b"x")
    with pytest.raises(RunLocationError, match="is a file"):
        RunStore(s3_endpoint.uri(store.root.split("/", 1)[1] + "/object"))


def test_opening_writes_nothing_until_create(tmp_path, s3_endpoint):
    RunStore(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    store = RunStore(s3_endpoint.uri(f"integrity/lazy-{time.time_ns()}"))
    assert _all_objects(store) == [] and not store.root_exists()
    store.create()
    assert store.root_exists()


@pytest.mark.parametrize(
    "uri",
    [
        "gs://raywalk-unreachable/run",  # no network, no credentials: GCS retries for 15 minutes by default
        "s3://raywalk-unreachable/run?endpoint_override=127.0.0.1:1&scheme=http",  # connection refused
    ],
)
def test_an_unreachable_store_fails_in_seconds(uri):
    started = time.monotonic()
    with pytest.raises(RunLocationError) as err:
        RunStore(uri)
    assert time.monotonic() - started < 10
    assert "raywalk-unreachable" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------- 8. bounded memory


def test_done_frames_reads_a_huge_index_in_bounded_memory(tmp_path):
    """200,000 index rows: the old reader built Python lists of four columns (about 60 MB of objects);
    this one keeps numpy arrays of one entry per frame and a few files' batches."""
    store = RunStore(tmp_path / "run")
    rows, per_file = 200_000, 10_000
    for chunk in range(rows // per_file):
        frames = np.arange(chunk * per_file, (chunk + 1) * per_file)
        store.write_chunk_index(
            chunk,
            {
                "frame": frames,
                "file": [f"frames/{f:06d}.png" for f in frames],
                "sha256": ["ab" * 32] * per_file,
                "bytes": np.full(per_file, 1000),
                "width": np.full(per_file, 64, np.int32),
                "height": np.full(per_file, 64, np.int32),
                "chunk": np.full(per_file, chunk, np.int32),
                "attempt": np.ones(per_file, np.int32),
                "node": ["node"] * per_file,
                "worker": ["w"] * per_file,
                "seconds": np.zeros(per_file),
            },
            run_id=RUN,
            fingerprint=FINGERPRINT,
        )
    for frame in (7, 123_456):
        store.write_bytes(f"frames/{frame:06d}.png", b"x" * 1000)
    tracemalloc.start()
    try:
        done = store.done_frames(rows, RUN)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert done.dtype == bool and done.shape == (rows,) and np.flatnonzero(done).tolist() == [7, 123_456]
    assert peak < 12 << 20, f"done_frames peaked at {peak / 2**20:.1f} MiB of Python objects"
