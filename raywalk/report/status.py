"""`raywalk status`: what a run holds, read from storage alone."""

from __future__ import annotations

import collections
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raywalk.core.commands import resume_command
from raywalk.core.pacing import max_jump, smoothness
from raywalk.core.stack import StackRecord
from raywalk.run.lock import is_stale, read_lock
from raywalk.run.manifest import Manifest
from raywalk.run.store import RunStore, frame_ranges


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
    rows = latest_done_rows(store.read_index(None, run_id=manifest.run_id), done)
    lines += stack_lines(manifest, frames_per_stack(rows))
    lines += _workers(rows)
    if missing and not lock:
        lines.append(f"finish    {resume_command(store.uri)}")
    return "\n".join(lines)


def latest_done_rows(index: pa.Table, done: np.ndarray) -> pa.Table:
    """The rows of `index` (one run's) of the `done` frames, one per frame (its latest: a frame rendered
    twice counts once)."""
    if not index.num_rows:
        return index
    frames = index["frame"].to_numpy(zero_copy_only=False)
    keep = (frames >= 0) & (frames < len(done))
    keep[keep] = done[frames[keep]]
    index = index.filter(pa.array(keep))
    if "written" in index.column_names:  # a frame rendered twice counts once: its latest row
        index = index.sort_by([("written", "descending")])
    _, first = np.unique(index["frame"].to_numpy(zero_copy_only=False), return_index=True)
    return index.take(pa.array(np.sort(first)))


def frames_per_stack(rows: pa.Table) -> dict[str | None, int]:
    """How many of `rows` (`latest_done_rows`) each stack id rendered; None for rows written before stacks."""
    stacks = rows["stack"].to_pylist() if "stack" in rows.column_names else [None] * rows.num_rows
    return dict(collections.Counter(stacks))


def stack_lines(manifest: Manifest, counts: dict[str | None, int]) -> list[str]:
    """Every stack the run was rendered with (the manifest's `stacks`, and any its done frames name), with
    how many done frames carry each."""
    recorded = {r.stack.id: r for r in manifest.stacks}
    if manifest.stack is not None and manifest.stack.id not in recorded:
        recorded[manifest.stack.id] = StackRecord(manifest.stack, "")
    if not recorded and not counts:
        return []
    current = manifest.stack.id if manifest.stack else None
    lines = [f"stacks    {len(recorded) or 'none'} recorded" + (f", rendering with {current}" if current else "")]
    for sid, record in recorded.items():
        how = "allowed change" if record.allowed else "first"
        when = f"{how} {record.first_used}" if record.first_used else how
        lines.append(f"  {sid} {counts.get(sid, 0):6d} frames  {when}: {record.stack.summary()}")
    for other, count in counts.items():
        if other not in recorded:
            what = "rendered before stacks were recorded" if other is None else "not in the manifest"
            lines.append(f"  {other or 'none':12} {count:6d} frames  {what}")
    return lines


def _workers(index: pa.Table) -> list[str]:
    """Frames and seconds per frame of each worker, over `latest_done_rows`."""
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
