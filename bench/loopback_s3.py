"""A loopback S3 server for the benchmark: moto, on 127.0.0.1 and a free port.

Called by the comparison, which puts each workload's CSV there so that the
kubegrid contender reads its data and writes its results over S3, as it would
in a cluster. The server's threads run in the benchmark process: their CPU is
reported apart from the contender's (``parent_cpu_seconds``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BUCKET = "kubegrid-bench"

# moto checks no signature: any key works, these are the conventional ones.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Off-cloud, an instance-metadata lookup stalls for seconds.
    "AWS_EC2_METADATA_DISABLED": "true",
}


class LoopbackS3:
    """A running server, its endpoint, and a client to fill and read it."""

    bucket = BUCKET

    def __init__(self, endpoint: str, client: Any) -> None:
        self.endpoint = endpoint
        self.client = client

    def upload(self, path: Path, key: str) -> str:
        self.client.upload_file(str(path), BUCKET, key)
        return f"s3://{BUCKET}/{key}"

    def read_json(self, key: str) -> Any:
        body = self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return json.loads(body)


@contextlib.contextmanager
def serve() -> Iterator[LoopbackS3]:
    """Start moto, create the bench bucket, stop the server on exit."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=BUCKET)
        yield LoopbackS3(endpoint, client)
    finally:
        server.stop()
