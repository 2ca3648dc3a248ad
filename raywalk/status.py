"""`raywalk status`: what a run holds, read from storage alone."""
from __future__ import annotations

import time

import pyarrow.compute as pc

from raywalk.store import RunStore, frame_ranges


def run_status(uri: str) -> str:
    """Frames done, missing and failed, who rendered them and how fast, as printable lines."""
    store = RunStore(uri, create=False)
    manifest = store.require_manifest()
    total = manifest.num_frames
    missing = store.missing_frames(total)
    failures = store.read_failures()
    lines = [
        f"run       {store.url()}",
        f"job       {manifest.job.name} (fingerprint {manifest.fingerprint[:12]})"
        + ("  RANDOM WEIGHTS" if manifest.random_weights else ""),
        f"frames    {total - len(missing)} done, {len(missing)} missing of {total}"
        + (f" ({frame_ranges(missing)})" if missing else ""),
        f"failed    {len(failures)} chunk(s)"
        + "".join(f"\n          chunk {c}: {f.get('error')} (frames {f.get('frames')}, {f.get('attempts')} attempts)"
                  for c, f in sorted(failures.items())),
    ]
    lock = store.read_lock()
    if lock:
        age = time.time() - float(lock.get("heartbeat", 0))
        lines.append(f"rendering by {lock.get('host')} pid {lock.get('pid')}, last heartbeat {age:.0f} s ago")
    index = store.read_index(["worker", "node", "seconds"])
    if index.num_rows:
        lines.append("workers   frames  s/frame  node")
        grouped = index.group_by(["worker", "node"]).aggregate([("seconds", "count"), ("seconds", "mean")])
        for row in grouped.sort_by([("worker", "ascending")]).to_pylist():
            lines.append(f"  {row['worker'][:12]:12} {row['seconds_count']:6d} {row['seconds_mean']:8.3f}  "
                         f"{row['node'][:12]}")
        lines.append(f"overall   {pc.mean(index['seconds']).as_py():.3f} s/frame over {index.num_rows} rows")
    return "\n".join(lines)
