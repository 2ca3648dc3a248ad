"""Library errors become raywalk's in one place (`raywalk.errors`): Ray's by the error that caused them, and a
cluster nobody answers at as one line and exit 5, with nothing written."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from ray.exceptions import RayTaskError

from raywalk.errors import CLUSTER, EXIT_CODES, ClusterError, RendererError, StoreError, describe, map_exceptions

from builders import synthetic_run, write_job


def closed_port() -> int:
    """A loopback port nothing listens at (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def files_of(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", ["render", "resume"])
def test_a_cluster_nobody_answers_at_is_one_line_and_exit_5_with_nothing_written(tmp_path, command):
    out = tmp_path / "out"
    address = f"127.0.0.1:{closed_port()}"
    if command == "render":
        args = ["render", str(write_job(tmp_path)), "--out", str(out)]
    else:  # a run with frames missing: the lock is taken, then released
        synthetic_run(str(out), done=range(8))
        args = ["resume", str(out)]
    before = files_of(out) if out.exists() else None
    result = subprocess.run(
        [sys.executable, "-m", "raywalk.cli", *args, "--address", address], capture_output=True, text=True
    )
    assert result.returncode == CLUSTER == 5, result.stderr
    assert result.stderr.splitlines() == [
        f"raywalk: error: cannot join the Ray cluster at {address}: nothing answers at {address} (Connection refused)"
    ]
    assert (files_of(out) if out.exists() else None) == before
    assert "cluster" in EXIT_CODES[CLUSTER]


def test_an_address_that_answers_but_not_as_ray_is_one_line_and_exit_5_with_nothing_written(tmp_path):
    """A web server where the cluster's GCS should be (the dashboard's port, the usual slip): refused once the
    gRPC handshake fails, not after Ray's minutes of retries."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    out = tmp_path / "out"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "raywalk.cli", "render", str(write_job(tmp_path)), "--out", str(out)]
            + ["--address", address],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == CLUSTER, result.stderr
    assert result.stderr.splitlines() == [
        f"raywalk: error: cannot join the Ray cluster at {address}: {address} answers, but not as Ray does (no gRPC"
        " in 10 s); a cluster's address is its head's GCS port (`ray start --head --port`, 6379 by default), not"
        " its dashboard's"
    ]
    assert not out.exists()


def test_ray_and_pyarrow_errors_become_raywalks_in_one_line():
    cause = ValueError("no such preset\nfoo")
    try:
        raise RayTaskError("check_task", "Traceback ...\n  many lines", cause).as_instanceof_cause()
    except RayTaskError as exc:
        assert describe(exc) == "foo"  # the cause's last line, not Ray's traceback
        with (
            pytest.raises(RendererError, match=r"^job.yaml: foo$"),
            map_exceptions({RayTaskError: lambda why: RendererError(f"job.yaml: {why}")}),
        ):
            raise exc
    with (
        pytest.raises(StoreError, match="^s3://b/run: not a Parquet file$"),
        map_exceptions(
            {ConnectionError: ClusterError, pa.ArrowException: lambda why: StoreError(f"s3://b/run: {why}")}
        ),
    ):
        raise pa.ArrowInvalid("not a\n Parquet file")
    with pytest.raises(KeyError), map_exceptions({ConnectionError: ClusterError}):  # not the library's: a bug
        raise KeyError("x")
