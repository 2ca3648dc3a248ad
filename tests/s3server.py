"""A real S3-compatible HTTP server on loopback (moto's standalone server) for tests.

The ``s3_endpoint`` session fixture yields an :class:`S3Endpoint`, a ``str``
equal to the bucket's base URI::

    s3://raywalk-test?endpoint_override=127.0.0.1:PORT&scheme=http

``s3_endpoint.uri("runs/a")`` gives the URI of a prefix inside the bucket
(``s3://raywalk-test/runs/a?endpoint_override=...&scheme=http``), which is
what ``RunStore`` and ``raywalk render --out`` take.

Dummy credentials and region are put in ``os.environ`` when this module is
imported (conftest imports it before any Ray instance starts), so Ray
workers inherit them, and nothing can reach real AWS.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator

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


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """Start moto's server on a free loopback port, create the bucket, stop at the end."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"{host}:{port}"
    boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name="us-east-1").create_bucket(
        Bucket=BUCKET
    )
    try:
        yield S3Endpoint(BUCKET, endpoint)
    finally:
        server.stop()
