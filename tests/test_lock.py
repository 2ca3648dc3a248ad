"""One driver at a time: exclusive creation, stale locks, fencing, heartbeats that fail, releases that fail."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from raywalk.errors import RunBusyError, RunError, StoreError
from raywalk.run.fs import RunFS
from raywalk.run.lock import LOCK, RunLock, read_lock
from raywalk.run.store import RunStore

from builders import wait_until


def lock_of(store: RunStore | RunFS, command: str = "render", **kwargs) -> RunLock:
    warnings: list[str] = []
    lock = RunLock(store, {"command": command}, settle=0.05, warn=warnings.append, **kwargs)
    lock.warnings = warnings  # type: ignore[attr-defined]
    return lock


def test_lock_busy_then_released(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    first = lock_of(store)
    first.acquire()
    second = lock_of(RunStore(store.uri), "resume")
    with pytest.raises(RunBusyError) as busy:
        second.acquire()
    message = str(busy.value)
    assert "\n" not in message and socket.gethostname() in message and f"pid {os.getpid()}" in message
    assert "render" in message and "s ago" in message
    first.heartbeat()
    first.release()
    assert store.read_lock() is None
    second.acquire()
    assert store.read_lock()["owner"] == {"command": "resume"}


def test_stale_lock_by_heartbeat_age(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    store.write_bytes(
        LOCK, json.dumps({"host": "elsewhere", "pid": 1, "token": "x", "heartbeat": time.time() - 120}).encode()
    )
    lock_of(store, stale_after=60).acquire()
    assert store.read_lock()["pid"] == os.getpid()


def test_lock_of_dead_local_process_is_stale(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.write_bytes(
        LOCK,
        json.dumps({"host": socket.gethostname(), "pid": dead.pid, "token": "x", "heartbeat": time.time()}).encode(),
    )
    lock_of(store).acquire()
    assert store.read_lock()["pid"] == os.getpid()


def test_lock_of_live_remote_host_is_busy(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    store.write_bytes(
        LOCK, json.dumps({"host": "gpu-node-7", "pid": 999_999, "token": "x", "heartbeat": time.time() - 5}).encode()
    )
    with pytest.raises(RunBusyError, match="gpu-node-7 pid 999999"):
        lock_of(store).acquire()


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"[1, 2]", b'{"token": 5, "heartbeat": 1}'])
def test_a_garbage_lock_counts_as_no_lock_and_is_named(tmp_path, garbage):
    store = RunStore(tmp_path / "run", create=True)
    store.write_bytes(LOCK, garbage)
    lock = lock_of(store)
    lock.acquire()
    assert store.read_lock()["token"] == lock.token
    assert any(store.url(LOCK) in w and "not a lock record" in w for w in lock.warnings)


def test_a_displaced_driver_finds_out_at_its_next_heartbeat(tmp_path):
    mine = lock_of(RunStore(tmp_path / "run", create=True), stale_after=0.0)
    mine.acquire()
    heartbeat = RunStore(tmp_path / "run").read_lock()["heartbeat"]
    wait_until(lambda: time.time() > heartbeat)  # mine's heartbeat is in the past: stale at stale_after=0
    theirs = lock_of(RunStore(tmp_path / "run"), "resume", stale_after=0.0)
    theirs.acquire()  # took the run over: mine looked stale to it
    with pytest.raises(RunBusyError, match="taken over by .*resume"):
        mine.heartbeat()
    mine.release()  # gives up nothing: the run is theirs
    assert RunStore(tmp_path / "run").read_lock()["token"] == theirs.token


def test_beat_writes_only_when_due(tmp_path):
    store = RunStore(tmp_path / "run", create=True)
    lock = lock_of(store, heartbeat_every=3600)
    lock.acquire()
    before = store.read_lock()["heartbeat"]
    wait_until(lambda: time.time() > before)  # a beat now would write a later heartbeat
    lock.beat()
    assert store.read_lock()["heartbeat"] == before
    lock.heartbeat_every = 0
    lock.beat()
    assert store.read_lock()["heartbeat"] > before


class FlakyStore(RunFS):
    """A run's files whose reads and writes fail while `down` is set."""

    down = False

    def read_bytes(self, name):
        if self.down:
            raise StoreError(f"{self.uri}: cannot read {name}: 503 Slow Down")
        return super().read_bytes(name)

    def write_bytes(self, name, data):
        if self.down:
            raise StoreError(f"{self.uri}: cannot write {name}: 503 Slow Down")
        return super().write_bytes(name, data)

    def delete(self, name):
        if self.down:
            raise StoreError(f"{self.uri}: cannot delete {name}: 503 Slow Down")
        return super().delete(name)


def test_a_transient_heartbeat_failure_is_tolerated_for_half_the_stale_window(tmp_path):
    store = FlakyStore(tmp_path / "run")
    store.create_root()
    lock = lock_of(store, stale_after=1.0)
    lock.acquire()
    store.down = True
    lock.heartbeat()  # within 0.5 s of the last good one: a warning, no error
    assert any("503" in w for w in lock.warnings)
    wait_until(lambda: time.monotonic() - lock._last_good > 0.5)  # past half the stale window since the last good one
    with pytest.raises(StoreError, match="could not be refreshed for 0 s.*503"):
        lock.heartbeat()


def test_a_failing_release_never_hides_the_error_that_ended_the_run(tmp_path):
    store = FlakyStore(tmp_path / "run")
    store.create_root()
    lock = lock_of(store)
    with pytest.raises(RunError, match="every renderer died"), lock.held():
        store.down = True
        raise RunError("every renderer died")
    assert any("could not release" in w and "503" in w for w in lock.warnings)


def test_a_failing_release_after_success_is_an_error(tmp_path):
    store = FlakyStore(tmp_path / "run")
    store.create_root()
    with pytest.raises(StoreError, match="503"), lock_of(store).held():
        store.down = True


def _contend(uri: str, start: float, results, decided) -> None:
    while time.time() < start:
        pass
    try:
        RunLock(RunStore(uri), {"command": "render"}, settle=0.3).acquire()
        results.put("won")
    except RunBusyError:
        results.put("busy")
    decided.wait(30)  # a winner that exited at once would leave a stale lock to a slow contender


@pytest.mark.parametrize("previous", ["none", "stale"])
def test_two_drivers_acquiring_at_once_exactly_one_wins(tmp_path, previous):
    store = RunStore(tmp_path / "run", create=True)
    if previous == "stale":
        store.write_bytes(
            LOCK, json.dumps({"host": "elsewhere", "pid": 1, "token": "old", "heartbeat": time.time() - 600}).encode()
        )
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    for _ in range(3):
        start = time.time() + 0.5
        decided = context.Event()
        procs = [context.Process(target=_contend, args=(store.uri, start, results, decided)) for _ in range(2)]
        for p in procs:
            p.start()
        outcomes = sorted(results.get(timeout=35) for _ in procs)
        decided.set()  # both have answered: the winner may exit
        for p in procs:
            p.join(30)
        assert outcomes == ["busy", "won"]
        holder = read_lock(store)
        assert holder is not None and holder["pid"] in {p.pid for p in procs}
        # the winner has exited: its lock is stale for the next round (dead process on this host)


def test_on_an_object_store_two_drivers_at_once_exactly_one_wins(s3_endpoint):
    """No create-if-absent there: each writes, waits, reads back; the token that stayed wins."""
    uri = s3_endpoint.uri("runs/locked")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def contend():
        lock = RunLock(RunStore(uri), {"command": "render"}, settle=0.5)
        barrier.wait()
        try:
            lock.acquire()
            outcomes.append("won")
        except RunBusyError:
            outcomes.append("busy")

    threads = [threading.Thread(target=contend) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["busy", "won"]
    later = lock_of(RunStore(uri))
    with pytest.raises(RunBusyError, match=f"in use by host .* pid {os.getpid()}"):
        later.acquire()  # the winner's lock holds: live process, fresh heartbeat
