"""`raywalk status`: what a run holds, read from storage alone."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raywalk.commands import resume_command
from raywalk.lock import is_stale, read_lock
from raywalk.pacing import max_jump, smoothness
from raywalk.store import RunStore, frame_ranges


def run_status(uri: str, verify: bool = False) -> str:
    """Frames done, missing and failed, who rendered them and how fast, as printable lines.

    With `verify`, every frame's PNG is read and hashed against its index row
    instead of trusting file sizes (what `resume --verify` would redo).

    Raises:
        RunLocationError: the location holds no run, or its manifest is damaged.
        StoreError: storage kept failing.
    """
    store = RunStore(uri, create=False)
    manifest = store.require_manifest()
    total = manifest.num_frames
    done = store.done_frames(total, manifest.run_id, verify=verify)
    missing = np.flatnonzero(~done).tolist()
    failures = store.read_failures()
    lines = [
        f"run       {store.url()}",
        f"job       {manifest.job.name} (fingerprint {manifest.fingerprint[:12]})"
        + ("  RANDOM WEIGHTS" if manifest.random_weights else ""),
        f"frames    {total - len(missing)} of {total} done, {len(missing)} missing"
        + (f" ({frame_ranges(missing)})" if missing else "")
        + (", every PNG rehashed" if verify else ""),
        f"failed    {len(failures)} chunk(s)"
        + "".join(
            f"\n          chunk {c}: {f.get('error')} (frames {f.get('frames')}, {f.get('attempts')} attempts)"
            for c, f in sorted(failures.items())
        ),
    ]
    lines += [f"damaged   {name}: unreadable, its frames count as missing" for name in store.damaged]
    lines += [
        f"damaged   {name}: unreadable, moved out of the index once its frames were done again"
        for name in store.moved_damaged()
    ]
    d = store.read_smoothness(manifest.run_id)
    if d is not None and len(d):
        lines.append(f"smoothness 1 − Gini = {smoothness(d):.2f}, max/mean jump {max_jump(d):.2f}")
    lock = read_lock(store)
    if lock:
        age = time.time() - float(lock.get("heartbeat", 0))
        who = f"host {lock.get('host')} pid {lock.get('pid')}, last heartbeat {age:.0f} s ago"
        lines.append(
            f"stale lock {who}: its driver is gone; the next render or resume takes the run over"
            if is_stale(lock)
            else f"rendering by {who}"
        )
    lines += _workers(store, manifest.run_id, done)
    if missing and not lock:
        lines.append(f"finish    {resume_command(store.uri)}")
    return "\n".join(lines)


def _workers(store: RunStore, run_id: str, done: np.ndarray) -> list[str]:
    """Frames and seconds per frame of each worker, over the done frames of this run (one row per frame)."""
    index = store.read_index(None, run_id=run_id)
    if not index.num_rows:
        return []
    frames = index["frame"].to_numpy(zero_copy_only=False)
    keep = (frames >= 0) & (frames < len(done))
    keep[keep] = done[frames[keep]]
    index = index.filter(pa.array(keep))
    if "written" in index.column_names:  # a frame rendered twice counts once: its latest row
        index = index.sort_by([("written", "descending")])
    _, first = np.unique(index["frame"].to_numpy(zero_copy_only=False), return_index=True)
    index = index.take(pa.array(np.sort(first)))
    if not index.num_rows:
        return []
    where = "host" if "host" in index.column_names else "node"
    grouped = index.group_by(["worker", where]).aggregate([("seconds", "count"), ("seconds", "mean")])
    lines = [f"workers   frames  s/frame  {where}"]
    for row in grouped.sort_by([("worker", "ascending")]).to_pylist():
        lines.append(
            f"  {row['worker'][:12]:12} {row['seconds_count']:6d} {row['seconds_mean']:8.3f}  {str(row[where])[:40]}"
        )
    lines.append(f"overall   {pc.mean(index['seconds']).as_py():.3f} s/frame over {index.num_rows} frames")
    return lines
