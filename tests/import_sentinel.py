"""Imported by `sentinel_doubles` at import time: present in a process's `sys.modules` exactly when that process
imported the renderer module (the driver never must: renderer checks run in Ray tasks)."""
