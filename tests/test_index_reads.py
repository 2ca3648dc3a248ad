"""Reading a run's index as a consumer does: frames.parquet, damaged index files set aside, foreign files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from raywalk.exec.driver import resume
from raywalk.outputs.assemble import assemble
from raywalk.outputs.frames_table import publish_frames_table
from raywalk.report.status import run_status
from raywalk.run.store import RunStore

from builders import CPU_WORKER, RUN, copy_run, quiet, run, write_chunk, write_job


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_connected) -> Path:
    """A finished render through Ray: 12 frames in chunks of 4 (index files chunk-000000..2), a GIF."""
    tmp = tmp_path_factory.mktemp("finished")
    outcome, _ = run(write_job(tmp), tmp / "out")
    assert outcome.complete and outcome.rendered == 12
    return tmp / "out"


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    return copy_run(run_dir, tmp_path / "out")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raywalk.cli", *args], capture_output=True, text=True)


def test_a_render_publishes_one_row_per_frame(finished):
    frames = pd.read_parquet(finished / "frames.parquet")
    assert frames["frame"].tolist() == list(range(12))
    assert set(frames["run_id"]) == {RunStore(str(finished)).require_manifest().run_id}
    assert list(frames.columns)[:3] == ["frame", "file", "sha256"] and "t" in frames.columns
    assert RunStore(str(finished)).output_ok("frames.parquet", frames["run_id"][0])
    count = duckdb.sql(f"select count(*), count(distinct frame) from '{finished / 'frames.parquet'}'").fetchall()
    assert count == [(12, 12)]
    assert ray.data.read_parquet(str(finished / "frames.parquet")).count() == 12


def test_a_repaired_run_reads_in_one_call_and_sets_the_damaged_file_aside(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    damaged = sorted((out / "index").glob("chunk-000001-*.parquet"))[0]
    truncated = damaged.read_bytes()[: damaged.stat().st_size // 2]
    damaged.write_bytes(truncated)
    corrupted = out / "frames" / "000009.png"  # same size, other bytes: --verify renders it again
    data = bytearray(corrupted.read_bytes())
    data[-20] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    with pytest.raises(pa.ArrowInvalid, match="magic bytes"):
        pd.read_parquet(out / "index")  # the fault: the README's one-call read fails on the damaged run
    assert f"damaged   index/{damaged.name}: unreadable" in run_status(str(out))

    outcome = resume(str(out), workers=CPU_WORKER, progress=quiet(), verify=True)
    assert outcome.complete and outcome.rendered == 5  # frames 4-7 of the damaged file, and frame 9

    assert not damaged.exists() and (out / "damaged" / damaged.name).read_bytes() == truncated
    status = run_status(str(out))
    assert "12 of 12 done" in status and f"damaged   damaged/{damaged.name}: unreadable, moved out" in status
    index = pd.read_parquet(out / "index")
    assert len(index) == 13 and sorted(set(index["frame"])) == list(range(12))  # frame 9 twice: append-only
    pattern = str(out / "index" / "*.parquet")
    assert duckdb.sql(f"select count(*) from read_parquet('{pattern}')").fetchall() == [(13,)]
    frames = pd.read_parquet(out / "frames.parquet")
    assert frames["frame"].tolist() == list(range(12))  # exactly one row per frame
    nine = index[index["frame"] == 9]
    assert frames.loc[frames["frame"] == 9, "written"].item() == nine["written"].max() > nine["written"].min()
    assert duckdb.sql(f"select count(distinct frame), count(*) from '{out / 'frames.parquet'}'").fetchall() == [
        (12, 12)
    ]


def notes() -> pa.Table:
    return pa.table({"note": ["render again with more steps"], "frame": ["the dog one"]})


@pytest.mark.parametrize("command", [["status"], ["assemble"], ["resume"], ["resume", "--verify"]])
def test_a_file_of_another_schema_in_index_is_named_once_and_ignored(finished, tmp_path, command):
    out = copy_of(finished, tmp_path)
    pq.write_table(notes(), out / "index" / "notes.parquet")
    result = cli(*command, str(out))
    assert result.returncode == 0, result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines() if "notes.parquet" in line]
    assert said == [
        f"{out / 'index' / 'notes.parquet'} is not a raywalk index file (those are chunk-*.parquet); ignoring it"
    ]
    assert (out / "index" / "notes.parquet").exists()  # a user's file is never moved


def test_a_chunk_file_of_another_schema_is_damage_set_aside_when_the_run_is_complete(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    later = out / "index" / "chunk-000003-0a1b2c3d.parquet"
    pq.write_table(notes(), later)
    result = cli("status", str(out))
    assert result.returncode == 0 and f"damaged   index/{later.name}: unreadable" in result.stdout
    assert "no column file, sha256, bytes" in result.stderr
    result = cli("resume", str(out))  # nothing to render: the run is found done, the file set aside
    assert result.returncode == 0, result.stderr
    assert not later.exists() and (out / "damaged" / later.name).exists()
    assert len(pd.read_parquet(out / "index")) == 12


def test_frames_table_holds_the_newest_row_of_the_current_run(tmp_path):
    store = RunStore(tmp_path / "run")
    write_chunk(store, 0, [0, 1, 2, 3], run_id="an-earlier-run")
    write_chunk(store, 0, [0, 1, 2, 3])
    write_chunk(store, 0, [1, 2], attempt=1)  # the chunk retried: two rows of this run for frames 1 and 2
    done, rows = store.frame_rows(4, RUN)
    assert done.all() and rows["frame"].to_pylist() == [0, 1, 2, 3]
    assert rows["attempt"].to_pylist() == [0, 1, 1, 0] and set(rows["run_id"].to_pylist()) == {RUN}
    assert rows.column_names[-1] == "t"  # the index's columns, trajectory parameters last
    store.delete("frames/000003.png")
    done, rows = store.frame_rows(4, RUN)
    assert np.flatnonzero(done).tolist() == [0, 1, 2] and rows["frame"].to_pylist() == [0, 1, 2]


def test_a_partial_assembly_writes_no_frames_table(tmp_path):
    store = RunStore(tmp_path / "run")
    write_chunk(store, 0, [0, 1, 2])
    write_chunk(store, 1, [3, 5])
    assemble(store, 6, {"gif": {}}, "walk", partial=True, run_id=RUN)
    assert store.exists("preview/walk.gif") and not store.exists("frames.parquet")
    write_chunk(store, 1, [4])
    assemble(store, 6, {"gif": {}}, "walk", run_id=RUN)
    assert pq.read_table(tmp_path / "run" / "frames.parquet")["frame"].to_pylist() == list(range(6))


def test_a_damaged_file_moves_out_only_when_every_frame_is_done_again(store):
    write_chunk(store, 0, [0, 1, 2])
    damaged = write_chunk(store, 1, [3, 4, 5])
    store.write_bytes(damaged, store.read_bytes(damaged)[:100])  # truncated
    assert publish_frames_table(store, 6, RUN) is None  # frames 3-5 missing: nothing moves, nothing written
    assert store.damaged == [damaged] and store.exists(damaged) and not store.exists("frames.parquet")
    write_chunk(store, 2, [3, 4, 5])  # the resume renders them again
    assert publish_frames_table(store, 6, RUN) == store.url("frames.parquet")
    assert not store.exists(damaged) and store.moved_damaged() == [damaged.replace("index/", "damaged/")]
    assert len(store.read_bytes(damaged.replace("index/", "damaged/"))) == 100
    rows = pq.read_table(pa.BufferReader(store.read_bytes("frames.parquet")))
    assert rows["frame"].to_pylist() == list(range(6)) and rows["chunk"].to_pylist() == [0, 0, 0, 2, 2, 2]
    assert store.output_ok("frames.parquet", RUN) and store.damaged == []
