"""Partial results: what a shard writes, and how the reducer reads it back.

Layout under the output location, per plan fingerprint::

    partials/<fingerprint>/shard-00003.json               a finished shard
    partials/<fingerprint>/chunks/shard-00003/<writer>-<seq>.json
                                                          checkpoints on the way
    partials/<fingerprint>/plans/<plan id>                a plan that wrote here

A shard checkpoints finished tasks every few seconds, so a killed pod loses at
most those seconds of work; once it finishes it writes the shard file and
drops its checkpoints. Writers name their checkpoints with a random id, so two
pods running the same index never overwrite each other; readers keep one record
per task (records of one task are equal: fits are deterministic).

Sharding is not part of a search's identity: a search resumed with another
shard count finds its finished tasks in files of the old numbering. Each
shard marks its plan, and reads only its own files unless another plan has
written here too; publishing shard 3 replaces the files named shard 3, so it
carries over every record they held, and a reader that finds a listed file
gone lists again to find where its records went. A machine that runs every
shard itself (``kubegrid run``) marks the plan and lists the files once for
all of them (:class:`Survey`): a shard then costs one write, not six
requests.

Each file starts with a header line carrying the sha256 of the JSON body that
follows, so a truncated or altered file is detected, named, and its tasks run
again rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from kubegrid.errors import ResultsError
from kubegrid.storage import NotFound, Store

logger = logging.getLogger(__name__)

_MAGIC = b"kubegrid-partial/1"

Record = dict[str, Any]


def shard_key(fingerprint: str, shard: int) -> str:
    return f"partials/{fingerprint}/shard-{shard:05d}.json"


def chunk_key(fingerprint: str, shard: int, writer: str, seq: int) -> str:
    return f"partials/{fingerprint}/chunks/shard-{shard:05d}/{writer}-{seq:06d}.json"


def encode(body: dict[str, Any]) -> bytes:
    """Header with the body's checksum, then the body as JSON."""
    payload = json.dumps(body, sort_keys=True, allow_nan=True).encode()
    digest = hashlib.sha256(payload).hexdigest()
    return _MAGIC + b" sha256=" + digest.encode() + b"\n" + payload


def decode(data: bytes, where: str) -> dict[str, Any]:
    """The body of a partial file; ResultsError when it fails its checksum."""
    header, _, payload = data.partition(b"\n")
    parts = header.split(b" sha256=")
    if len(parts) != 2 or parts[0] != _MAGIC:
        raise ResultsError(f"{where}: not a kubegrid partial result (bad header)")
    if hashlib.sha256(payload).hexdigest().encode() != parts[1]:
        raise ResultsError(
            f"{where}: checksum mismatch, the file is truncated or altered"
        )
    body: dict[str, Any] = json.loads(payload)
    return body


def write_chunk(
    store: Store,
    fingerprint: str,
    shard: int,
    writer: str,
    seq: int,
    records: list[Record],
) -> None:
    body = {"fingerprint": fingerprint, "shard": shard, "records": records}
    store.write(chunk_key(fingerprint, shard, writer, seq), encode(body))


def write_shard(
    store: Store,
    fingerprint: str,
    shard: int,
    records: list[Record],
    chunks: list[str] | None = None,
) -> None:
    """Publish a finished shard, then drop its checkpoints: ``chunks`` when
    the caller knows them all, else whatever a listing finds."""
    body = {"fingerprint": fingerprint, "shard": shard, "records": records}
    store.write(shard_key(fingerprint, shard), encode(body))
    if chunks is None:
        chunks = store.list(_chunk_prefix(fingerprint, shard))
    for key in chunks:
        store.delete(key)


def mark_plan(store: Store, fingerprint: str, plan_id: str) -> bool:
    """Record that shards of ``plan_id`` write here; True if another plan did."""
    prefix = f"partials/{fingerprint}/plans/"
    store.write(prefix + plan_id, b"")
    return any(key != prefix + plan_id for key in store.list(prefix))


@dataclass(frozen=True)
class Survey:
    """The partial files of a search, listed once by a machine that runs
    every shard itself, so that no shard lists or marks anything again.

    Only the shards of that one run write here meanwhile; each adds its own
    checkpoints to what the survey found.
    """

    fingerprint: str
    other_plans: bool
    keys: list[str]

    def shard_keys(self, shard: int) -> list[str]:
        """The shard's published file and its checkpoints, as listed."""
        published = shard_key(self.fingerprint, shard)
        chunks = _chunk_prefix(self.fingerprint, shard)
        return [k for k in self.keys if k == published or k.startswith(chunks)]

    def chunks(self, shard: int) -> list[str]:
        prefix = _chunk_prefix(self.fingerprint, shard)
        return [k for k in self.keys if k.startswith(prefix)]


def survey(store: Store, fingerprint: str, plan_id: str) -> Survey:
    """Mark the plan and list the search's partials, in two requests."""
    plans = f"partials/{fingerprint}/plans/"
    store.write(plans + plan_id, b"")
    keys = store.list(f"partials/{fingerprint}/")
    other_plans = any(k.startswith(plans) and k != plans + plan_id for k in keys)
    files = [k for k in keys if k.endswith(".json")]
    return Survey(fingerprint, other_plans, files)


def _chunk_prefix(fingerprint: str, shard: int) -> str:
    return f"partials/{fingerprint}/chunks/shard-{shard:05d}/"


def read_records(
    store: Store,
    fingerprint: str,
    shard: int | None = None,
    keys: list[str] | None = None,
) -> tuple[dict[int, Record], list[str]]:
    """Every readable record by task id, from one shard's files or all (or
    from ``keys`` when they were listed already), and the problems.

    Unreadable files are logged, deleted and skipped: their tasks then count as
    not done, so they are run again instead of poisoning the results. Each
    problem names the file and what was wrong with it.
    """
    if keys is None:
        keys = _listed(store, fingerprint, shard)
    records: dict[int, Record] = {}
    problems: list[str] = []
    read: set[str] = set()
    # A shard that finishes publishes its file, then drops the checkpoints of
    # its number, whatever plan wrote them: a checkpoint gone since the
    # listing means its records now sit in a file the listing predates, so
    # list again. Each pass reads only new files; a few passes always do.
    for _ in range(_MAX_LISTINGS):
        vanished = False
        for key in keys:
            got = _read_file(store, key, problems)
            read.add(key)
            vanished |= got is None
            for record in got or ():
                records.setdefault(int(record["task"]), record)
        if not vanished:
            break
        keys = [k for k in _listed(store, fingerprint, shard) if k not in read]
    return records, problems


_MAX_LISTINGS = 3


def _listed(store: Store, fingerprint: str, shard: int | None) -> list[str]:
    # One shard lists only its own keys: a pod of a large search must not
    # page through every other shard's files to find its own.
    if shard is None:
        return [
            k for k in store.list(f"partials/{fingerprint}/") if k.endswith(".json")
        ]
    published = store.list(shard_key(fingerprint, shard).removesuffix(".json"))
    return published + store.list(_chunk_prefix(fingerprint, shard))


def _read_file(store: Store, key: str, problems: list[str]) -> list[Record] | None:
    """The file's records; None when it is gone, [] when it was unreadable."""
    where = f"{store.uri.rstrip('/')}/{key}"
    try:
        body = decode(store.read(key), where)
    except NotFound:
        return None
    except (ResultsError, ValueError) as exc:
        logger.warning("deleting %s, its tasks will run again: %s", key, exc)
        problems.append(str(exc))
        store.delete(key)
        return []
    return list(body.get("records", []))


def missing_by_shard(
    records: dict[int, Record], shard_of_task: Any, n_tasks: int
) -> dict[int, int]:
    """For each shard that lacks results, how many of its tasks are missing."""
    missing: dict[int, int] = defaultdict(int)
    for task in range(n_tasks):
        if task not in records:
            missing[int(shard_of_task[task])] += 1
    return dict(missing)
