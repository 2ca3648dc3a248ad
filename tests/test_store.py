"""The run directory through pyarrow.fs: round trips, resume checks, index readers (the lock: test_lock.py)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raywalk import job_from_dict
from raywalk.errors import RunLocationError
from raywalk.run.manifest import new_manifest
from raywalk.run.store import INDEX_SCHEMA, RunStore, StoreError, frame_name, frame_ranges

from builders import FINGERPRINT, RUN, png, write_chunk


def test_round_trip(store):
    assert store.read_manifest() is None and store.read_keyframes() is None
    assert store.read_index().num_rows == 0 and store.read_index().schema == INDEX_SCHEMA
    job = job_from_dict({"name": "j", "prompts": ["a", "b"], "walk": {"frames": 4}})
    manifest = new_manifest(job).replace(versions={"raywalk": "0.1.0"})
    store.write_manifest(manifest)
    assert store.read_manifest() == manifest
    keyframes = np.arange(2 * 77 * 8, dtype=np.float32).reshape(2, 77, 8)
    digest = store.write_keyframes(keyframes)
    assert digest == hashlib.sha256(store.read_bytes("keyframes.npz")).hexdigest()
    got = store.read_keyframes(digest)
    assert got.dtype == np.float32 and np.array_equal(got, keyframes)
    parts = {"sequence": np.ones((2, 6, 4), np.float64), "pooled": np.arange(6.0).reshape(2, 3)}
    digest = store.write_keyframes(parts)  # named parts (SD3) come back by name, as float32
    got = store.read_keyframes(digest)
    assert set(got) == {"sequence", "pooled"} and all(v.dtype == np.float32 for v in got.values())
    assert all(np.array_equal(got[k], parts[k]) for k in parts)

    info = store.write_frame(3, png(3))
    assert info == {"file": "frames/000003.png", "sha256": hashlib.sha256(png(3)).hexdigest(), "bytes": len(png(3))}
    assert store.read_frame(3) == png(3) == store.read_bytes("frames/000003.png")
    with pytest.raises(FileNotFoundError):
        store.read_frame(4)

    before = time.time()
    write_chunk(store, 0, [0, 1, 2, 3])
    table = store.read_index()
    assert table.num_rows == 4 and table.column_names == INDEX_SCHEMA.names + ["t"]
    assert table.schema.field("attempt").type == pa.int32() and table.schema.field("t").type == pa.float64()
    assert sorted(table["frame"].to_pylist()) == [0, 1, 2, 3]
    assert set(table["run_id"].to_pylist()) == {RUN} and set(table["fingerprint"].to_pylist()) == {FINGERPRINT}
    assert before <= min(table["written"].to_pylist()) <= time.time()

    store.write_failure(5, {"error": "boom", "attempts": 3})
    store.write_failure(2, {"error": "bang"})
    assert store.read_failures() == {2: {"error": "bang"}, 5: {"error": "boom", "attempts": 3}}
    store.clear_failure(5)
    store.clear_failure(9)  # never failed: nothing to clear, no error
    assert store.read_failures() == {2: {"error": "bang"}}

    store.write_output("job.gif", b"GIF89a...", RUN)
    assert store.read_bytes("job.gif") == b"GIF89a..." and store.exists("job.gif")
    assert store.output_ok("job.gif", RUN) and not store.output_ok("job.gif", "run-b")
    assert store.output_record("job.gif")["sha256"] == hashlib.sha256(b"GIF89a...").hexdigest()
    assert store.url("job.gif").endswith("/job.gif") and "endpoint_override" not in store.url("job.gif")


def test_rewrites_are_idempotent(store):
    write_chunk(store, 0, [0, 1, 2])
    write_chunk(store, 0, [0, 1, 2], attempt=1)  # the chunk retried: a file of its own, duplicates tolerated
    store.write_frame(1, png(1))
    table = store.read_index()
    assert sorted(table["frame"].to_pylist()) == [0, 0, 1, 1, 2, 2]
    assert sorted(table["attempt"].to_pylist()) == [0, 0, 0, 1, 1, 1]
    assert store.done_frames(3, RUN).all()


def test_local_writes_leave_no_temp_files(tmp_path):
    store = RunStore(tmp_path / "run")
    write_chunk(store, 0, [0, 1])
    with pytest.raises(RuntimeError), store.local_output("job.mp4") as path:
        Path(path).write_bytes(b"half")
        raise RuntimeError("encoder died")
    with store.local_output("job.gif") as path:
        assert path.endswith(".gif")
        Path(path).write_bytes(b"whole")
    names = sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert names[:2] == ["frames/000000.png", "frames/000001.png"] and names[3:] == ["job.gif"]
    assert names[2].startswith("index/chunk-000000-") and names[2].endswith(".parquet")


def test_local_output_uploads_to_s3(s3_endpoint):
    store = RunStore(s3_endpoint.uri("store/upload"))
    with store.local_output("job.mp4") as path:
        Path(path).write_bytes(b"x" * 100_000)
    assert store.read_bytes("job.mp4") == b"x" * 100_000
    with pytest.raises(RuntimeError), store.local_output("broken.mp4", RUN) as path:
        Path(path).write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert not store.exists("broken.mp4") and not store.output_ok("broken.mp4", RUN)


def test_done_frames_finds_deleted_and_truncated_pngs(store):
    write_chunk(store, 0, [0, 1, 2, 3])
    write_chunk(store, 1, [4, 5, 6, 7])
    store.write_frame(9, png(9))  # a PNG whose chunk index was never written: not done
    store.delete("frames/000002.png")
    store.write_bytes("frames/000005.png", png(5)[:-10])
    assert np.flatnonzero(store.done_frames(10, RUN)).tolist() == [0, 1, 3, 4, 6, 7]
    assert store.missing_frames(10, RUN) == [2, 5, 8, 9]
    assert frame_ranges(store.missing_frames(10, RUN)) == "2, 5, 8-9"


def test_verify_rehashes_same_size_corruption(store):
    write_chunk(store, 0, [0, 1, 2])
    data = bytearray(png(1))
    data[len(data) // 2] ^= 0xFF
    store.write_bytes("frames/000001.png", bytes(data))
    assert store.done_frames(3, RUN).tolist() == [True, True, True]
    assert store.done_frames(3, RUN, verify=True).tolist() == [True, False, True]
    assert store.missing_frames(3, RUN, verify=True) == [1]


def test_frame_indexed_by_two_chunks_counts_once(tmp_path):
    store = RunStore(tmp_path / "run")
    write_chunk(store, 0, [0, 1, 2])
    write_chunk(store, 7, [2, 3])  # re-planned chunk overlapping frame 2
    assert store.read_index().num_rows == 5
    assert store.missing_frames(4, RUN) == []


def test_index_reads_with_pandas_and_duckdb(tmp_path):
    store = RunStore(tmp_path / "run")
    write_chunk(store, 1, [3, 4, 5])
    write_chunk(store, 0, [0, 1, 2])
    frame = pd.read_parquet(tmp_path / "run" / "index")
    assert sorted(frame["frame"]) == list(range(6)) and list(frame.columns)[:-1] == INDEX_SCHEMA.names
    con = duckdb.connect()
    rows = con.execute(
        "select chunk, count(*), sum(bytes) from read_parquet(?) group by chunk order by chunk",
        [str(tmp_path / "run" / "index" / "*.parquet")],
    ).fetchall()
    sizes = [sum(len(png(f)) for f in fs) for fs in ([0, 1, 2], [3, 4, 5])]
    assert rows == [(0, 3, sizes[0]), (1, 3, sizes[1])]


def test_done_frames_scales_to_a_big_run(tmp_path):
    store = RunStore(tmp_path / "run")
    data = png(0, size=4)
    for chunk in range(250):
        write_chunk(
            store,
            chunk,
            list(range(chunk * 40, chunk * 40 + 40)),
            images=dict.fromkeys(range(chunk * 40, chunk * 40 + 40), data),
            size=4,
        )
    start = time.perf_counter()
    assert store.missing_frames(10_000, RUN) == []
    assert time.perf_counter() - start < 5


def test_frame_names_and_ranges():
    assert frame_name(42) == "000042.png" and frame_name(1_234_567) == "1234567.png"
    assert frame_ranges([]) == ""
    assert frame_ranges([9, 3, 4, 5, 12, 13, 14, 20]) == "3-5, 9, 12-14, 20"


def test_index_needs_required_columns(tmp_path):
    with pytest.raises(ValueError, match="sha256"):
        RunStore(tmp_path / "run").write_chunk_index(
            0, {"frame": [0], "file": ["frames/000000.png"]}, run_id=RUN, fingerprint=FINGERPRINT
        )


@pytest.mark.parametrize("uri", ["foo://bucket/run", "s3:///run", "s3://", "/proc/raywalk/run"])
def test_bad_uri_is_a_one_line_store_error(uri):
    with pytest.raises(StoreError) as err:
        RunStore(uri, create=True)
    assert uri in str(err.value) and "\n" not in str(err.value)


def test_missing_bucket_and_missing_run(s3_endpoint, tmp_path):
    uri = f"s3://no-such-bucket/run?endpoint_override={s3_endpoint.endpoint}&scheme=http"
    with pytest.raises(RunLocationError, match="bucket 'no-such-bucket' does not exist"):
        RunStore(uri)
    nothing = RunStore(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists() and not nothing.root_exists()  # opening writes nothing
    with pytest.raises(RunLocationError, match="nothing: no run there"):
        nothing.require_manifest()
    nothing.create()
    assert nothing.root_exists() and (tmp_path / "nothing").is_dir()
    with pytest.raises(RunLocationError, match="holds no raywalk run"):
        nothing.require_manifest()
