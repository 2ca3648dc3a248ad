"""The run directory: a filesystem with retries, its layout, the manifest, the index, records and the lock.

Storage is the source of truth of a run: resume, status and assembly read only
this. Imports only the core (import-linter checks it). `store.RunStore` is the
facade the other layers use; each module below owns one concept.

Invariants (what resume may trust), each enforced by the module named:

1. A frame is done only if its PNG exists with the size (and, with ``verify``,
   the SHA-256) recorded by an index row that carries the manifest's run id.
   Rows of an earlier run (another job, ``--force``) never count; rows written
   before run ids read as ``LEGACY_RUN_ID`` (`index`).
2. The index is append-only: each chunk attempt writes a file of its own with
   only the rows it rendered, and no writer reads, merges or rewrites another's
   file. Readers union every file and take a frame as done if any current row
   matches its PNG, so no later render, whatever its chunking, can drop a good
   frame's row (`index`).
3. A fresh start writes the new manifest, with a new run id, before deleting
   anything: from that write on, the old run's rows are fenced off even if the
   deletions never finish (`lifecycle`).
4. An output under its final name is whole: it is uploaded under a temporary
   name and moved into place (pyarrow completes an interrupted S3 upload,
   apache/arrow#40502), and its size, SHA-256 and run id are recorded
   (`output_ok`). Partial outputs live under ``preview/`` only (`publish`, `records`).
5. Every read, write, listing and delete goes through one retry helper that
   retries transient errors (throttling, 5xx, timeouts, dropped connections) a
   bounded number of times and fails at once, in one line, on anything else
   (`retry`, used by every call of `fs`; the lock's writes too).
6. Damage is repaired, not fatal: an unreadable index file (or a ``chunk-*``
   file whose columns are not an index's) counts as its rows missing (named in
   ``damaged``) and is moved to ``damaged/`` once every frame is done again
   (``move_damaged``); any other file in ``index/`` is named once and ignored
   (`index`); garbage failure or lock records are ignored with a warning
   (`records`, `lock`), and keyframes or a timing table that do not match the
   manifest are not used (`artifacts`).
"""
