"""`raywalk status`: counts from storage alone, the lock as it really is, workers by machine, --verify."""

from __future__ import annotations

import json
import subprocess
import time

from raywalk.report.status import run_status
from raywalk.run.lock import RunLock

from builders import cli, synthetic_run


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("status", *args)


def test_a_job_file_is_not_a_run_one_line_exit_2(tmp_path):
    job = tmp_path / "smoke.yaml"
    job.write_text("prompts: [a, b]\n")
    result = status(str(job))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "Errno" not in result.stderr and result.stderr.endswith("smoke.yaml: is a file, not a run directory\n")


def test_counts_and_workers_cover_done_frames_only(tmp_path):
    store = synthetic_run(str(tmp_path / "run"), done=range(8))
    (tmp_path / "run" / "frames" / "000005.png").unlink()  # deleted after it was indexed
    text = run_status(store.uri)
    assert "7 of 12 done, 5 missing (5, 8-11)" in text
    rows = [line.split() for line in text.splitlines() if line.startswith("  worker-")]
    assert sorted((r[0], int(r[1])) for r in rows) == [("worker-0", 4), ("worker-1", 3)]  # frame 5 not counted
    assert "over 7 frames" in text and text.rstrip().endswith(f"finish    raywalk resume {store.uri}")


def test_a_stale_lock_is_not_shown_as_rendering(tmp_path):
    store = synthetic_run(str(tmp_path / "run"), done=range(4))
    with RunLock(store, {"job": "synthetic"}).held():
        assert "rendering by host" in run_status(store.uri)
        record = json.loads((tmp_path / "run" / "lock.json").read_text())
        record["heartbeat"] = time.time() - 3600  # its driver stopped beating an hour ago
        (tmp_path / "run" / "lock.json").write_text(json.dumps(record))
        text = run_status(store.uri)
        assert "rendering by" not in text
        assert "stale lock host" in text and "its driver is gone" in text


def test_verify_rehashes_frames_that_sizes_cannot_tell_apart(tmp_path):
    store = synthetic_run(str(tmp_path / "run"), done=range(4))
    png = tmp_path / "run" / "frames" / "000002.png"
    png.write_bytes(bytes(reversed(png.read_bytes())))  # same size, other bytes
    assert "4 of 12 done" in status(store.uri).stdout
    checked = status(store.uri, "--verify")
    assert checked.returncode == 0 and "3 of 12 done, 9 missing (2, 4-11), every PNG rehashed" in checked.stdout


def test_a_damaged_index_file_is_named_and_its_frames_count_as_missing(tmp_path):
    store = synthetic_run(str(tmp_path / "run"), done=range(8))
    damaged = sorted((tmp_path / "run" / "index").glob("chunk-000001-*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:40])
    text = run_status(store.uri)
    assert "4 of 12 done, 8 missing (4-11)" in text
    assert f"damaged   index/{damaged.name}: unreadable" in text
