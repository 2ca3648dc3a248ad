"""The run directory: a filesystem with retries, its layout, the manifest, the index, records and the lock.

Imports only the core (import-linter checks it)."""
