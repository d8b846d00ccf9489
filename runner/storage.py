"""Object storage: local directories and S3-compatible buckets behind one API.

Called by data loading, the shard runner and the reducer. URIs are
``s3://bucket/key``, ``file:///abs/path`` or a plain path.

Every write is atomic: a reader sees the whole object or none of it. On S3 a
single PUT is atomic already; on a file system we write a temporary file
beside the target and rename it.

Failures are sorted for the operator's retry policy: a missing bucket, a
refused or incomplete credential or an invalid name is a
:class:`StorageAccessError` (a user error: retrying cannot fix it), anything
else that survives the retries is an :class:`~kubegrid.errors.InfraError`.
boto3 retries a request until its response arrives; a body broken off after
that is read again here (:meth:`S3Store._get`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import shutil
import signal
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar
from urllib.parse import urlparse

from kubegrid import parallel
from kubegrid.errors import InfraError, UserError

if TYPE_CHECKING:
    from kubegrid.spec import GridSearchSpec

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Error codes that mean "this will never work as configured".
_PERMANENT_CODES = {
    "NoSuchBucket",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "InvalidBucketName",
    "403",
}

# Of those, the codes that mean the credentials may not do this (a HEAD
# answer has no body, so its code is the bare status).
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "403"}

# Error codes that S3 (or an S3-compatible server) may send with a 4xx status
# although trying again can work: botocore retries them as transient or
# throttling, so they must not turn into a user error once it gives up.
_TRANSIENT_CODES = {
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
}

# Total attempts per request (the first one included) unless AWS_MAX_ATTEMPTS
# says otherwise. With botocore's jittered exponential backoff (up to 1 s·2^i
# on throttling, 50 ms·2^i on 5xx and resets, each wait capped at 20 s), 11
# attempts wait about a minute of throttling out, and about 25 s of 5xx.
_DEFAULT_ATTEMPTS = 11

# First wait before reading a broken-off body again, doubled each time (with
# full jitter, as botocore does): a connection that died mid-way is often a
# restarting server, which needs a moment rather than an instant retry.
_BODY_BACKOFF_SECONDS = 0.5


class StorageAccessError(UserError):
    """The URI cannot be reached as configured (no bucket, no permission)."""


class NotFound(Exception):
    """The object does not exist (callers decide whether that is an error)."""


class Store(Protocol):
    """A place objects are read from and written to, addressed by relative key."""

    uri: str

    def read(self, key: str) -> bytes: ...
    def write(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def delete_many(self, keys: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class Location:
    """Connection settings for S3, taken from the spec's ``storage`` block."""

    endpoint_url: str | None = None
    region: str | None = None


def location_of(spec: GridSearchSpec) -> Location:
    """The connection settings a search's ``storage`` block gives."""
    return Location(spec.storage.endpoint_url, spec.storage.region)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def open_store(uri: str, location: Location | None = None) -> Store:
    """The store rooted at ``uri``: keys are relative to it."""
    if is_s3(uri):
        return S3Store(uri, location or Location())
    return LocalStore(uri)


@dataclass(frozen=True)
class _Copy:
    """An S3 object being copied to a local file by a forked process."""

    pid: int
    path: Path


# The copies :func:`prefetching` started, by object; each is used at most once.
_copies: dict[tuple[str, Location], _Copy] = {}


@contextlib.contextmanager
def prefetching(uri: str, location: Location) -> Iterator[None]:
    """Copy the S3 object at ``uri`` to a local file while the caller goes on.

    Meant to be entered before the heavy imports: scikit-learn takes about a
    second to import, and a large dataset as long to download; a forked
    process does the second while this one does the first.
    :func:`readable_path` then uses the copy and removes it. If the copy
    fails for any reason, it reads the object itself, so errors are reported
    exactly as without this. An unused copy is removed when the block ends.
    """
    name = uri.rpartition("/")[2]
    if not is_s3(uri) or not name:
        yield
        return
    # The copy keeps the object's name: parsers infer compression from it.
    path = Path(tempfile.mkdtemp(prefix="kubegrid-data-")) / name
    copy = _Copy(_fork_copier(uri, location, path), path)
    _copies[(uri, location)] = copy
    try:
        yield
    finally:
        _copies.pop((uri, location), None)
        with contextlib.suppress(ProcessLookupError):
            os.kill(copy.pid, signal.SIGKILL)
        _exit_code(copy.pid)
        shutil.rmtree(path.parent, ignore_errors=True)


def _fork_copier(uri: str, location: Location, path: Path) -> int:
    """Fork a process that downloads ``uri`` to ``path``; its pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    # In the child: nothing it does may reach the user's terminal or return
    # into the caller's code. A refusal the store gave (after any retries) is
    # left for the parent to raise, so a denied read is not asked twice; on
    # any other failure the parent downloads the object itself.
    code = 1
    try:
        parallel.die_with_parent(parent)
        logging.disable(logging.CRITICAL)
        partial = path.with_name(f".partial-{path.name}")
        _download(uri, location, partial)
        partial.rename(path)
        code = 0
    except (StorageAccessError, InfraError) as exc:
        with contextlib.suppress(BaseException):
            kind = "user" if isinstance(exc, StorageAccessError) else "infra"
            path.with_name(_FAILURE).write_text(f"{kind}\n{exc}")
    except BaseException:
        pass
    finally:
        os._exit(code)


def _exit_code(pid: int) -> int | None:
    """Wait for a forked process; its exit code, or None if already reaped."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


# Beside a copy that failed: the kind of error ("user" or "infra"), a line
# break, and its message.
_FAILURE = ".failure"


def _finished_copy(uri: str, location: Location) -> Path | None:
    """The complete local copy of ``uri`` that :func:`prefetching` made, if any.

    Raises the store's error when the copy failed with one.
    """
    copy = _copies.pop((uri, location), None)
    if copy is None:
        return None
    if _exit_code(copy.pid) == 0 and copy.path.is_file():
        return copy.path
    try:
        kind, _, message = copy.path.with_name(_FAILURE).read_text().partition("\n")
    except OSError:
        return None
    raise (StorageAccessError if kind == "user" else InfraError)(message)


@contextlib.contextmanager
def readable_path(uri: str, location: Location | None = None) -> Iterator[Path]:
    """A local path holding the object at ``uri``, for parsers that stream.

    A local file is its own path. An S3 object is streamed into a temporary
    file, removed on exit: a dataset is never held whole in memory as bytes
    beside the table parsed from it.
    """
    if not is_s3(uri):
        path = Path(urlparse(uri).path if uri.startswith("file://") else uri)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise StorageAccessError(f"{uri}: no such object") from None
        except OSError as exc:
            raise StorageAccessError(f"{uri}: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise StorageAccessError(f"{uri}: not a file")
        yield path
        return
    location = location or Location()
    copy = _finished_copy(uri, location)
    if copy is not None:
        try:
            yield copy
        finally:
            shutil.rmtree(copy.parent, ignore_errors=True)
        return
    with tempfile.TemporaryDirectory(prefix="kubegrid-data-") as directory:
        path = Path(directory) / uri.rpartition("/")[2]
        _download(uri, location, path)
        yield path


def _download(uri: str, location: Location, path: Path) -> None:
    """Stream the S3 object at ``uri`` into a new file at ``path``."""
    parent, _, name = uri.rpartition("/")
    try:
        with path.open("wb") as handle:
            S3Store(parent, location).download(name, handle)
    except NotFound:
        raise StorageAccessError(f"{uri}: no such object") from None
    except OSError as exc:
        raise InfraError(
            f"{uri}: no room for a temporary copy in {path.parent}: {exc}"
        ) from None


def check_writable(store: Store) -> None:
    """Write and remove a small probe object, so a bad output fails early."""
    # A dot name: listings skip it, so a concurrent reader never sees it.
    key = f".kubegrid-probe-{uuid.uuid4().hex[:12]}"
    store.write(key, b"")
    store.delete(key)


class LocalStore:
    """A directory on the local file system."""

    def __init__(self, uri: str) -> None:
        path = urlparse(uri).path if uri.startswith("file://") else uri
        self.uri = uri
        self.root = Path(path)

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as exc:
            raise StorageAccessError(f"{self.root / key}: {exc.strerror}") from None

    def write(self, key: str, data: bytes) -> None:
        target = self.root / key
        # Mode 0666 less the umask, as any new file gets (mkstemp's 0600 would
        # hide results from the user's group); a dot name keeps it out of lists.
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _local_error(exc, target) from None

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        folder = base if base.is_dir() else base.parent
        if not folder.is_dir():
            return []
        found = []
        for path in folder.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if (
                path.is_file()
                and key.startswith(prefix)
                and not path.name.startswith(".")
            ):
                found.append(key)
        return sorted(found)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.delete(key)


# Errors that say a local path cannot work as given; retrying never helps.
_PERMANENT_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.EROFS,
}


def _local_error(exc: OSError, where: Path) -> Exception:
    """Sort a file-system failure into permanent (the path) or transient (disk)."""
    blocker = _file_in_the_way(where)
    if blocker is not None:
        return StorageAccessError(f"{blocker} is a file, not a folder")
    if exc.errno in _PERMANENT_ERRNOS:
        return StorageAccessError(f"{where}: {exc.strerror}")
    return InfraError(f"{where}: {exc.strerror or exc}")


def _file_in_the_way(path: Path) -> Path | None:
    """The file among ``path``'s parents, if one stands where a folder must."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


class S3Store:
    """A prefix in an S3-compatible bucket, reached through boto3."""

    def __init__(self, uri: str, location: Location) -> None:
        parsed = urlparse(uri)
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.location = location

    @property
    def client(self) -> Any:
        # Looked up on each call, so a store made before a fork is still safe
        # to use in the child.
        return _client(self.location)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def read(self, key: str) -> bytes:
        try:
            return self._get(key, lambda body: body.read())
        except Exception as exc:
            raise _translate(exc, self._where(key)) from None

    def download(self, key: str, handle: BinaryIO) -> None:
        """Stream one object into an open file, a megabyte at a time."""

        def copy(body: Any) -> None:
            # A body read again is written again from the file's start.
            handle.seek(0)
            handle.truncate()
            for chunk in body.iter_chunks(1 << 20):
                handle.write(chunk)

        try:
            self._get(key, copy)
        except Exception as exc:
            raise _translate(exc, self._where(key)) from None

    def _get(self, key: str, consume: Callable[[Any], T]) -> T:
        """GET one object and hand its body to `consume`; again if it breaks.

        botocore's retries end once a response has arrived, so a connection
        reset or a timeout while the body streams would reach the caller on
        its first occurrence. Such a read starts over, with backoff, up to
        the client's total attempts; errors before the body are botocore's
        to retry and pass straight through.
        """
        from botocore.exceptions import (
            FlexibleChecksumError,
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
        )

        # A body that fails the checksum the store sent with it was damaged
        # on the way, and a fresh read is the cure, as for one broken off.
        broken = (
            ResponseStreamingError,
            ReadTimeoutError,
            IncompleteReadError,
            FlexibleChecksumError,
        )

        client = self.client
        attempts = int(client.meta.config.retries.get("total_max_attempts", 1))
        attempt = 1
        while True:
            response = client.get_object(Bucket=self.bucket, Key=self._key(key))
            try:
                return consume(response["Body"])
            except broken:
                if attempt >= attempts:
                    raise
            cap = min(_BODY_BACKOFF_SECONDS * 2 ** (attempt - 1), 20.0)
            delay = random.uniform(0, cap)
            logger.warning(
                "%s: the body broke off or failed its checksum; reading again "
                "in %.2f s",
                self._where(key),
                delay,
            )
            time.sleep(delay)
            attempt += 1

    def write(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as exc:
            raise _translate(exc, self._where(key)) from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:
            error = _translate(exc, self._where(key))
            if isinstance(error, NotFound):
                return False
            raise error from None

    def list(self, prefix: str) -> list[str]:
        keys = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            for page in pages:
                for item in page.get("Contents", []):
                    keys.append(item["Key"][len(self.prefix) :])
        except Exception as exc:
            raise _translate(exc, self._where(prefix)) from None
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise _translate(exc, self._where(key)) from None

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (missing ones too) in one request per thousand.

        Not atomic: on an error some keys may be gone and others not, so a
        caller that needs an order deletes the first key on its own.
        """
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            objects = [{"Key": self._key(key)} for key in batch]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )
            except Exception as exc:
                raise _translate(exc, self._where(batch[0])) from None
            # A batch answers 200 and lists the keys it could not delete.
            for error in answer.get("Errors") or []:
                key = str(error.get("Key", ""))[len(self.prefix) :]
                raise _translate_answer({"Error": error}, self._where(key)) from None


# The most keys one DeleteObjects request may name.
_DELETE_BATCH = 1000

_clients: dict[Location, Any] = {}

# A forked worker must not share its parent's pooled connections: two
# processes writing on one socket interleave their requests and read each
# other's answers. The child drops the inherited clients and makes its own.
os.register_at_fork(after_in_child=_clients.clear)


def _client(location: Location) -> Any:
    """One boto3 client per location and process, with retries on throttling.

    Credentials and, when the spec gives none, the endpoint come from the
    standard AWS chain (environment, config files, IAM roles for the pod).
    """
    if location not in _clients:
        import boto3
        from botocore.config import Config

        config = Config(
            retries=_retries(),  # type: ignore[arg-type]
            connect_timeout=10,
            read_timeout=120,
        )
        try:
            _clients[location] = boto3.client(
                "s3",
                endpoint_url=location.endpoint_url,
                region_name=location.region
                or os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION")
                or "us-east-1",
                config=config,
            )
        except ValueError as exc:
            # boto3 refuses an endpoint that is not a URL ("Invalid endpoint").
            raise StorageAccessError(
                f"S3 endpoint {location.endpoint_url!r}: {exc}; give a URL such "
                "as http://minio:9000 in spec.storage.endpointUrl"
            ) from None
    return _clients[location]


def _retries() -> dict[str, Any]:
    """botocore's retry settings: adaptive, 11 attempts, unless the environment
    chooses.

    "adaptive" is "standard" (backoff on throttling, 5xx and resets) plus a
    client-side rate limit once the store throttles. A value in the client's
    Config would override the standard AWS_RETRY_MODE and AWS_MAX_ATTEMPTS
    (total attempts), so each is set only when its variable is absent.
    """
    retries: dict[str, Any] = {}
    if not os.environ.get("AWS_RETRY_MODE"):
        retries["mode"] = "adaptive"
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        # Not botocore's "max_attempts" key: that one counts retries only.
        retries["total_max_attempts"] = _DEFAULT_ATTEMPTS
    return retries


def _translate(exc: Exception, where: str) -> Exception:
    """Sort a boto3 failure into not-found, permanent or transient."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        ParamValidationError,
        PartialCredentialsError,
    )

    if isinstance(exc, ClientError):
        return _translate_answer(exc.response, where)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageAccessError(
            f"{where}: {exc}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or reference a Secret in spec.storage.secretRef"
        )
    if isinstance(exc, ParamValidationError):
        # Checked before sending, e.g. a bucket name S3 cannot have.
        return StorageAccessError(f"{where}: {' '.join(str(exc).split())}")
    if isinstance(exc, BotoCoreError):
        # Connections refused, reset or timed out past the retries.
        return InfraError(f"{where}: {exc}")
    return exc


def _translate_answer(response: Mapping[str, Any], where: str) -> Exception:
    """Sort the store's error answer by its code first, then its status."""
    error = response.get("Error", {})
    code = str(error.get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    reason = error.get("Message") or code
    if code in ("NoSuchKey", "404", "NotFound"):
        return NotFound(where)
    if code in _TRANSIENT_CODES:
        return InfraError(f"{where}: {code}: {reason}")
    if code in _PERMANENT_CODES or status in (400, 401, 403):
        hint = ""
        if code in _DENIED_CODES:
            hint = (
                "; the credentials in use are not allowed this: check the "
                "bucket policy and the IAM user or role"
            )
        return StorageAccessError(f"{where}: {code}: {reason}{hint}")
    return InfraError(f"{where}: {code or status}: {reason}")
