"""The run read once: `RunState` and `IndexRead` decide as the store does, and a render reads the index once at its
end (a fresh render) or once in all (a no-op resume of a finished run)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import ray

from raywalk.exec.driver import resume
from raywalk.exec.tasks import assemble_outputs
from raywalk.run.state import RunState, read_index
from raywalk.run.store import RunStore
from test_render import quiet, run, write_job
from test_store import RUN, write_chunk

INDEX_READS = ("read_index", "done_frames", "frame_rows", "missing_frames")


@pytest.fixture
def index_reads(monkeypatch) -> list[str]:
    """The index reads of this process, one entry per outermost call of a `RunStore` method that scans the
    index (a method that calls another counts once)."""
    reads: list[str] = []
    depth = threading.local()
    for name in INDEX_READS:
        original = getattr(RunStore, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            outer = not getattr(depth, "n", 0)
            depth.n = getattr(depth, "n", 0) + 1
            try:
                return _original(self, *args, **kwargs)
            finally:
                depth.n -= 1
                if outer:
                    reads.append(_name)

        monkeypatch.setattr(RunStore, name, counted)
    return reads


class _InProcess:
    """The assembly task run in this process, so that its index reads are counted here."""

    def remote(self, *args):
        return ray.put(assemble_outputs(*args))


def test_a_full_render_reads_the_index_once_at_its_end_and_a_no_op_resume_once_in_all(
    ray_connected, tmp_path, index_reads, monkeypatch
):
    monkeypatch.setattr("raywalk.exec.phases.assemble_task", lambda: _InProcess())
    out = tmp_path / "out"
    outcome, _ = run(write_job(tmp_path), out)
    assert outcome.complete and outcome.rendered == 12 and outcome.outputs
    assert index_reads == ["read_index"]  # assembly, frames.parquet, smoothness and report share it
    assert (out / "frames.parquet").exists() and (out / "smoothness.parquet").exists()

    index_reads.clear()
    again = resume(str(out), progress=quiet())
    assert again.complete and again.rendered == 0
    assert index_reads == ["read_index"]
    assert (out / "report.html").exists()


@pytest.mark.parametrize("verify", [False, True])
def test_an_index_read_decides_as_the_store_does(tmp_path, verify):
    store = RunStore(tmp_path / "run")
    write_chunk(store, 0, [0, 1, 2, 3], run_id="an-earlier-run")
    write_chunk(store, 0, [0, 1, 2, 3])
    write_chunk(store, 0, [1, 2], attempt=1)  # retried: two rows of this run for frames 1 and 2
    write_chunk(store, 1, [5])
    store.delete("frames/000003.png")
    damaged = store.read_bytes("frames/000005.png")
    store.write_bytes("frames/000005.png", damaged[:-4] + b"\0\0\0\0")  # same size, other bytes
    read = read_index(store, 8, RUN, verify=verify)
    assert np.array_equal(read.done, store.done_frames(8, RUN, verify=verify))
    assert read.missing == store.missing_frames(8, RUN, verify=verify)
    assert read.rows.equals(store.read_index(run_id=RUN))
    if not verify:
        done, rows = store.frame_rows(8, RUN)
        assert read.newest_rows().equals(rows)


def test_a_run_state_drops_its_index_read_once_the_render_changed_the_run():
    class _Manifest:
        num_frames = 6
        run_id = RUN

    state = RunState.fresh(_Manifest())  # type: ignore[arg-type]
    assert state.missing == list(range(6)) and state.index is None
    state.rendered([0, 1, 2])
    assert state.missing == [3, 4, 5]
