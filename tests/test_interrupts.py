"""How a render ends early (issue #18): SIGINT and SIGTERM stop the workers, release the run and print the
resume command; the report an incomplete render leaves states no lock its driver has released."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from raywalk.core.commands import resume_command
from raywalk.exec.driver import resume
from raywalk.run.store import RunStore

from builders import CPU_WORKER, cpu_worker_args, frame_bytes, quiet, run, write_job


def lines_of(proc: subprocess.Popen) -> queue.Queue:
    """The lines `proc` prints, as they come (None at its end), read on a thread."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_render_releases_the_run_and_prints_the_resume_command(ray_connected, tmp_path, sig, status):
    out = tmp_path / "out"
    job = write_job(tmp_path, frames=16, chunk_size=2, options={"seconds_per_frame": 0.5})
    driver = subprocess.Popen(
        [sys.executable, "-m", "raywalk.cli", "render", str(job), "--out", str(out)]
        + cpu_worker_args(ray_connected["address"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, seen = lines_of(driver), []
    deadline = time.monotonic() + 180
    while not any(line.startswith('{"event": "chunk"') for line in seen):  # frames are rendering
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
        assert line is not None, "\n".join(seen)
        seen.append(line)
    driver.send_signal(sig)
    assert driver.wait(timeout=120) == status
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    assert seen[-1].startswith(f"raywalk: interrupted: {sig.name}; the workers were stopped and the run released; ")
    assert seen[-1].endswith(f"finish with: {resume_command(str(out))}") and " frames missing (" in seen[-1]
    assert any(json.loads(line).get("event") == "interrupted" for line in seen if line.startswith("{"))
    assert "Aborted!" not in seen and not (out / "lock.json").exists()  # released, not merely stale
    # Done means published in the index (invariant 1); a chunk stopped between writing its PNGs and
    # publishing its rows leaves PNGs that the resume renders again.
    done = int(RunStore(str(out)).done_frames(16).sum())
    assert 0 < done < 16 and done <= len(frame_bytes(out))  # it stopped mid-run
    finished = resume(str(out), workers=CPU_WORKER, progress=quiet())
    assert finished.complete and finished.rendered == 16 - done


def test_the_report_of_an_incomplete_render_states_no_lock_its_driver_released(ray_connected, tmp_path):
    out = tmp_path / "out"
    job = write_job(
        tmp_path,
        renderer="pipeline_doubles:BrokenRenderer",
        options={"fail_frames": [5]},
        walk={"kind": "text_walk", "frames": 12, "step_size": 1.0},
    )
    outcome, _ = run(job, out)
    assert outcome.missing == [4, 5, 6, 7]  # incomplete: the report was written while the lock was held
    assert RunStore(str(out)).read_lock() is None
    page = (out / "report.html").read_text()
    assert "4 missing (4-7)" in page
    assert "held the run" not in page and "holds the run" not in page
