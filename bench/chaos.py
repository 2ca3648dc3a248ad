"""Chaos benchmark: renders that survive SIGKILLed workers and drivers, frame for frame.

    python bench/chaos.py                       # 3 runs, >= 24 worker kills, >= 6 driver kills
    python bench/chaos.py --runs 5 --seed 7
    python bench/chaos.py --smoke               # 1 run of 8 frames, 1 worker kill, 1 driver kill

On a private local Ray (`ray start --head` on free ports, stopped by its process
group), one clean render of a job is the reference. Then each run renders the
same job with `raywalk render` while random renderer actor processes are
SIGKILLed (PIDs from Ray's state API), and the driver itself is SIGKILLed at
random points, start-up included, each time followed by `raywalk resume` until
the run is complete. Each run prints one JSON line: the kills, frames lost
(must be 0), whether every frame PNG and every index row (minus the columns
that say how, not what: attempt, node, worker, seconds) is byte-identical to
the clean run's, the drivers' exit codes (-9: SIGKILLed on purpose) and the
wall time of each `raywalk resume` (start-up included; the last one finished
the run). A last line sums the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), str(REPO), os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only; drivers need no shared token file
VOLATILE = ("attempt", "node", "host", "worker", "seconds", "run_id", "fingerprint", "written")  # how, not what
PORT_FLAGS = (
    "port",
    "dashboard-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
    "ray-client-server-port",
    "runtime-env-agent-port",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(temp: Path, cpus: int, gpus: int = 0) -> tuple[subprocess.Popen, str]:
    """`ray start --head --block` on free ports (other Ray clusters may run on this machine) in a process
    group of its own, with `gpus` fake GPUs; (process, address)."""
    ports = {flag: free_port() for flag in PORT_FLAGS}
    log = open(temp / "ray-start.log", "w")
    proc = subprocess.Popen(
        [
            "ray",
            "start",
            "--head",
            "--block",
            f"--num-cpus={cpus}",
            f"--num-gpus={gpus}",
            *(f"--{flag}={port}" for flag, port in ports.items()),
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--temp-dir={temp / 'ray'}",
            "--disable-usage-stats",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_head(proc)
            raise RuntimeError(f"ray start failed: {(temp / 'ray-start.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['dashboard-port']}/api/version", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    return proc, f"127.0.0.1:{ports['port']}"


def stop_head(proc: subprocess.Popen) -> None:
    """Stop the cluster `start_head` started, by its process group, and nothing else: SIGKILL at once (it holds
    nothing to save; `ray start --block` given SIGTERM takes over 30 s to end)."""
    try:  # raylet, GCS, dashboard and workers share its process group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def write_job(directory: Path, frames: int, seconds_per_frame: float) -> Path:
    path = directory / "chaos.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "chaos",
                "prompts": ["a lighthouse", "a harbour at night"],
                "walk": {"kind": "interpolate", "frames": frames, "method": "slerp"},
                "noise": {"kind": "per_frame", "seed": 3},
                "model": {
                    "renderer": "timed_renderer:TimedRenderer",
                    "width": 64,
                    "height": 64,
                    "steps": 1,
                    "batch_size": 2,
                    "options": {"seconds_per_frame": seconds_per_frame},
                },
                "chunking": {"chunk_size": 4, "max_attempts": 10, "in_flight": 2},
                "workers": {"count": 2, "gpus": 0, "cpus": 0.5, "max_restarts": 20},
                "outputs": {},
            }
        )
    )
    return path


def driver(command: list[str], address: str, log: Path) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "raywalk.cli", *command, "--address", address], stdout=out, stderr=subprocess.STDOUT
        )


def snapshot(out: Path) -> tuple[dict[str, bytes], list[dict]]:
    """Every frame's bytes and every index row without its volatile columns, in frame order."""
    from raywalk.run.store import RunStore

    frames = {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}
    rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in RunStore(str(out)).read_index().to_pylist()]
    return frames, sorted(rows, key=lambda r: r["frame"])


class ActorKiller(threading.Thread):
    """SIGKILLs a random alive renderer actor every `pause` seconds while `active`, up to `budget` kills."""

    def __init__(self, address: str, rng: random.Random, budget: int, pause: tuple[float, float]):
        super().__init__(daemon=True)
        self.address, self.rng, self.budget, self.pause = address, rng, budget, pause
        self.kills = 0
        self.active = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        from ray.util.state import list_actors

        while not self.done.is_set():
            time.sleep(self.rng.uniform(*self.pause))
            if not self.active.is_set() or self.kills >= self.budget:
                continue
            try:
                alive = list_actors(
                    address=self.address,
                    filters=[("class_name", "=", "RenderWorker"), ("state", "=", "ALIVE")],
                    detail=True,
                    raise_on_missing_output=False,
                    timeout=5,
                )
            except Exception:
                continue
            pids = [a.pid for a in alive if a.pid]
            if pids:
                try:
                    os.kill(self.rng.choice(pids), signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass


def chaos_run(
    index: int,
    job: Path,
    address: str,
    tmp: Path,
    clean: tuple,
    rng: random.Random,
    actor_kills: int,
    driver_kills: int,
    num_chunks: int,
) -> dict:
    from raywalk.run.store import RunStore

    out = tmp / f"run-{index}"
    log = tmp / f"run-{index}.log"
    killer = ActorKiller(address, rng, actor_kills, (0.3, 1.0))
    killer.start()
    killer.active.set()
    started = time.monotonic()
    command = ["render", str(job), "--out", str(out)]
    exits: list[int] = []
    resume_seconds: list[float] = []
    killed = 0
    for _ in range(60):  # attempts: drivers killed on purpose, runs ended by lost workers, the finish
        began = time.monotonic()
        proc = driver(command, address, log)
        if killed < driver_kills:
            # A random point: during start-up (before any chunk), or after a random number of chunks.
            if rng.random() < 0.3:
                deadline = began + rng.uniform(0.5, 4.0)
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
            else:
                target = len(list((out / "index").glob("*.parquet"))) + rng.randint(1, max(1, num_chunks // 4))
                while proc.poll() is None and len(list((out / "index").glob("*.parquet"))) < target:
                    time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
        exits.append(proc.wait())
        if command[0] == "resume":
            resume_seconds.append(round(time.monotonic() - began, 2))
        # Killed before it wrote anything (start-up checks): nothing to resume, render again.
        command = ["resume", str(out)] if (out / "manifest.json").exists() else command
        if exits[-1] == 0 and killed >= driver_kills:
            break
    killer.done.set()
    killer.join()
    store = RunStore(str(out))
    num_frames = store.read_job().num_frames
    frames, rows = snapshot(out)
    return {
        "run": index,
        "actor_kills": killer.kills,
        "driver_kills": killed,
        "exit_codes": exits,
        # -9: the SIGKILLs; 0 done; 1 incomplete (chunks failed under the kills): anything else is a bug
        "unexpected_exits": [code for code in exits if code not in (-9, 0, 1)],
        "frames_lost": len(store.missing_frames(num_frames)),
        "frames_identical": frames == clean[0],
        "index_identical": rows == clean[1],
        "resume_seconds": resume_seconds,
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--seconds-per-frame", type=float, default=0.1)
    parser.add_argument("--actor-kills", type=int, default=24, help="renderer actor SIGKILLs over all runs")
    parser.add_argument("--driver-kills", type=int, default=6, help="driver SIGKILLs over all runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the run directories and logs")
    parser.add_argument("--smoke", action="store_true", help="1 run of 8 frames, 1 worker and 1 driver kill")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.frames, args.seconds_per_frame, args.actor_kills, args.driver_kills = 1, 8, 0.05, 1, 1
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="raywalk-chaos-", dir="/tmp"))
    head, address = start_head(tmp, cpus=4)
    try:
        import ray

        ray.init(address=address, logging_level="error")
        job = write_job(tmp, args.frames, args.seconds_per_frame)
        num_chunks = -(-args.frames // 4)
        started = time.monotonic()
        clean_driver = driver(["render", str(job), "--out", str(tmp / "clean")], address, tmp / "clean.log")
        if clean_driver.wait() != 0:
            raise SystemExit(f"the clean run failed: {(tmp / 'clean.log').read_text()[-2000:]}")
        clean = snapshot(tmp / "clean")
        print(
            json.dumps({"clean_run": True, "frames": len(clean[0]), "seconds": round(time.monotonic() - started, 1)}),
            flush=True,
        )
        results = []
        for run in range(args.runs):
            kills = [total // args.runs + (run < total % args.runs) for total in (args.actor_kills, args.driver_kills)]
            result = chaos_run(run, job, address, tmp, clean, rng, *kills, num_chunks)
            print(json.dumps(result), flush=True)
            results.append(result)
        resumes = [s for r in results for s in r["resume_seconds"]]
        print(
            json.dumps(
                {
                    "runs": len(results),
                    "actor_kills": sum(r["actor_kills"] for r in results),
                    "driver_kills": sum(r["driver_kills"] for r in results),
                    "unexpected_exits": [c for r in results for c in r["unexpected_exits"]],
                    "frames_lost": sum(r["frames_lost"] for r in results),
                    "all_frames_identical": all(r["frames_identical"] for r in results),
                    "all_index_rows_identical": all(r["index_identical"] for r in results),
                    "resume_seconds_median": sorted(resumes)[len(resumes) // 2] if resumes else None,
                    "resume_seconds_max": max(resumes, default=None),
                }
            ),
            flush=True,
        )
    finally:
        import ray

        ray.shutdown()
        stop_head(head)
        if args.keep:
            print(f"# kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
