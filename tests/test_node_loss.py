"""A node removed from a multi-node cluster in the middle of a run: the run still completes."""

from __future__ import annotations

import io
import json
import threading

import ray
from ray.cluster_utils import Cluster

from raywalk import load_job
from raywalk.exec.driver import WorkerSpec, render
from raywalk.exec.progress import Progress
from raywalk.run.store import RunStore

from builders import frame_bytes, wait_for, write_job
from conftest import _free_port


def test_node_removed_mid_run(ray_head, tmp_path):
    ray.shutdown()  # leave the session's head; this test needs a cluster of its own
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "dashboard_agent_listen_port": _free_port()}
    )
    doomed = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.add_node(num_cpus=1, num_gpus=1)
    try:
        ray.init(address=cluster.address, logging_level="warning")
        job = load_job(write_job(tmp_path, frames=16, chunk_size=2, options={"seconds_per_frame": 0.6}))
        out = tmp_path / "out"
        removed = threading.Event()

        def both_nodes_rendered() -> bool:
            if not list((out / "index").glob("*.parquet")):
                return False
            return len(set(RunStore(str(out)).read_index(["node"])["node"].to_pylist())) == 2

        def remove_when_started():
            # Not before each node has rendered a chunk: on a busy machine one worker can finish several
            # chunks while the other is still starting.
            wait_for(both_nodes_rendered, timeout=120, interval=0.1)
            cluster.remove_node(doomed, allow_graceful=False)
            removed.set()

        remover = threading.Thread(target=remove_when_started)
        remover.start()
        log = io.StringIO()
        outcome = render(
            job,
            str(out),
            workers=WorkerSpec(count=2, gpus=1, cpus=0.5),
            progress=Progress(job.num_frames, 0, stream=log, bar=False),
        )
        remover.join()
        assert removed.is_set()
        assert outcome.complete, log.getvalue()
        assert len(frame_bytes(out)) == 16
        index = RunStore(str(out)).read_index()
        assert len(set(index["node"].to_pylist())) == 2  # both nodes rendered before one was lost
        # A chunk in flight on the lost node was really queued again, not silently dropped.
        events = [json.loads(line) for line in log.getvalue().splitlines()]
        retried = {e["chunk"] for e in events if e["event"] == "retry"}
        assert retried, log.getvalue()
        rows = index.to_pylist()
        assert retried <= {r["chunk"] for r in rows if r["attempt"] > 1}  # their rows come from a later attempt
    finally:
        ray.shutdown()
        cluster.shutdown()
