"""S3 for tests: moto's threaded server on a free loopback port.

Role: `fixtures.s3_server` starts one per session; `fixtures.s3` makes a
client and a fresh bucket per test. Code under test reaches it through
`s3_env()` (for subprocesses) or `client()` (in-process). moto keeps its
state in this process, so buckets persist across tests of a session; use a
fresh bucket name per test. moto checks neither SigV4 nor presigned-URL
expiry (see /work/shared/TEST-INFRA.md).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
from moto.server import ThreadedMotoServer

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Run moto on 127.0.0.1 and a free port; yield its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def client(
    endpoint_url: str, *, total_attempts: int | None = None, **config: Any
) -> Any:
    """A boto3 S3 client with dummy credentials for `endpoint_url`.

    `total_attempts` counts the first try too (1 = never retry) and selects
    botocore's standard retry mode; None keeps botocore's defaults. Beware:
    botocore's own ``max_attempts`` key counts *retries*, not attempts.
    Extra keyword arguments go to `botocore.config.Config`.
    """
    if total_attempts is not None:
        config["retries"] = {"mode": "standard", "total_max_attempts": total_attempts}
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=botocore.config.Config(**config),
    )


def s3_env(endpoint_url: str) -> dict[str, str]:
    """Environment variables pointing boto3 in a subprocess at `endpoint_url`."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ENDPOINT_URL_S3": endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # No instance-metadata lookups: they stall for seconds off-cloud.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def fresh_bucket(s3_client: Any, prefix: str = "kubegrid-test") -> str:
    """Create a uniquely named bucket and return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
