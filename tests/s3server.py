"""A real S3-compatible HTTP server on loopback (moto's standalone server) for tests.

The ``s3_endpoint`` session fixture yields an :class:`S3Endpoint`, a ``str``
equal to the bucket's base URI::

    s3://raywalk-test?endpoint_override=127.0.0.1:PORT&scheme=http

``s3_endpoint.uri("runs/a")`` gives the URI of a prefix inside the bucket
(``s3://raywalk-test/runs/a?endpoint_override=...&scheme=http``), which is
what ``RunStore`` and ``raywalk render --out`` take.

``s3_faults`` puts a second loopback HTTP server in front of the same moto
backend (:class:`FaultyFront`): it answers the requests a test chooses with a
real S3 error (``503 SlowDown`` by default) before they reach moto, and counts
what it injected, so retries are tested against real HTTP failures.

Dummy credentials and region are put in ``os.environ`` when this module is
imported (conftest imports it before any Ray instance starts), so Ray
workers inherit them, and nothing can reach real AWS.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator

import pytest

BUCKET = "raywalk-test"

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)


class S3Endpoint(str):
    """Base URI of the test bucket; ``uri(prefix)`` names a prefix inside it."""

    endpoint: str  # "127.0.0.1:PORT"
    bucket: str

    def __new__(cls, bucket: str, endpoint: str) -> S3Endpoint:
        self = super().__new__(cls, f"s3://{bucket}?endpoint_override={endpoint}&scheme=http")
        self.bucket = bucket
        self.endpoint = endpoint
        return self

    def uri(self, prefix: str) -> str:
        """The URI of ``prefix`` inside the bucket, with the endpoint options."""
        return f"s3://{self.bucket}/{prefix.strip('/')}?endpoint_override={self.endpoint}&scheme=http"


def _s3_app():
    """Moto's S3 WSGI app, with one fix so that pyarrow accepts multipart uploads.

    Moto 5 answers CompleteMultipartUpload with a <CompleteMultipartUploadResponse>
    root; S3 (and the AWS docs) use <CompleteMultipartUploadResult>, and Arrow's
    S3 client treats any other root as an error embedded in a 200 OK, retrying
    until it fails. RunStore sends small files as single PUTs, which never get
    here; files over pyarrow's part size (GIF/MP4 uploads) do.
    """
    from moto.server import DomainDispatcherApplication, create_backend_app

    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] != "POST" or "uploadId=" not in environ.get("QUERY_STRING", ""):
            return moto_app(environ, start_response)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(moto_app(environ, capture)).replace(
            b"CompleteMultipartUploadResponse", b"CompleteMultipartUploadResult"
        )
        headers = [(k, str(len(body)) if k.lower() == "content-length" else v) for k, v in captured["headers"]]
        start_response(captured["status"], headers)
        return [body]

    return app


class FaultyFront:
    """WSGI front of moto's S3 app that fails chosen requests with an S3 error, thread-safely.

    ``fail(first=N)`` fails the next N requests, ``fail(every=k)`` every k-th
    one; ``injected`` counts the errors sent, ``requests`` every request seen.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.endpoint = ""
        self.fail()

    def fail(self, first: int = 0, every: int = 0, status: int = 503, code: str = "SlowDown") -> None:
        """Start a new fault plan (and new counts)."""
        with self._lock:
            self.first, self.every, self.status, self.code = first, every, status, code
            self.injected = self.requests = 0

    def uri(self, prefix: str) -> str:
        """The URI of ``prefix`` in the test bucket, through this front."""
        return f"s3://{BUCKET}/{prefix.strip('/')}?endpoint_override={self.endpoint}&scheme=http"

    def __call__(self, environ, start_response):
        with self._lock:
            self.requests += 1
            inject = self.first > 0 or (self.every > 0 and self.requests % self.every == 0)
            if inject:
                self.first = max(0, self.first - 1)
                self.injected += 1
        if not inject:
            return self.app(environ, start_response)
        from werkzeug.wsgi import get_input_stream

        get_input_stream(environ).read()  # the request body, so the connection stays in step
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{self.code}</Code>'
            f"<Message>injected by the test</Message><RequestId>fault-{self.injected}</RequestId></Error>"
        ).encode()
        reason = {500: "Internal Server Error", 503: "Service Unavailable"}.get(self.status, "Error")
        start_response(
            f"{self.status} {reason}", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def _serve(app: Callable, name: str):
    """Serve a WSGI app on a free loopback port in a thread; returns (server, thread, "127.0.0.1:PORT")."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return server, thread, f"127.0.0.1:{server.server_port}"


@pytest.fixture(scope="session")
def s3_faults(s3_endpoint) -> Iterator[FaultyFront]:
    """A FaultyFront on its own port, in front of the moto backend that ``s3_endpoint`` serves (moto keeps
    its buckets per process, so both see the same objects)."""
    front = FaultyFront(_s3_app())
    server, thread, front.endpoint = _serve(front, "moto-s3-faulty")
    try:
        yield front
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """Start moto's S3 server on a free loopback port, create the bucket, stop at the end."""
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server, thread, endpoint = _serve(_s3_app(), "moto-s3")
    boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield S3Endpoint(BUCKET, endpoint)
    finally:
        server.shutdown()
        thread.join()
