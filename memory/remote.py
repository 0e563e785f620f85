"""Remote object storage behind the artifact store, so workers on other machines see the same artifacts.

`RemoteObjects` is the small interface the store needs; `S3Objects` implements it on any S3-compatible
service (AWS, MinIO, moto, …) with boto3. Keys are relative paths the store builds from validated
SHA-256 digests (`objects/<2 hex>/<sha256><ending>`), never user text.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from schemas import BackendUnavailable, InvalidInput

_MISSING = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


@runtime_checkable
class RemoteObjects(Protocol):
    """Whole-object storage by key; each upload is atomic (readers see the old object or the new one)."""

    def exists(self, key: str) -> bool: ...

    def upload(self, local_path: Path, key: str) -> None: ...

    def download(self, key: str, local_path: Path) -> None:
        """Write the object to `local_path`; `FileNotFoundError` if there is no object under `key`."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""
        ...


class S3Objects:
    """Objects in an S3 bucket under a prefix, from a URL `s3://bucket/prefix`.

    The boto3 client is made on first use (after a worker forks, never shared across processes) and the
    bucket is checked then; credentials come from boto3's usual chain (AWS_* variables, ~/.aws, roles).
    """

    def __init__(self, url: str, endpoint_url: str | None = None, *, max_attempts: int = 3) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidInput(f"{url!r} is not an S3 URL", field="store_url",
                               fix="set VITRON_STORE_URL to s3://bucket or s3://bucket/prefix")
        self.url = url
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint_url = endpoint_url
        self._max_attempts = max_attempts
        self._client: Any = None
        self._client_pid = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Objects({self.url!r}, endpoint_url={self.endpoint_url!r})"

    # -- RemoteObjects -------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        client = self._connect()
        with self._errors("check", key):
            try:
                client.head_object(Bucket=self.bucket, Key=self._full(key))
            except Exception as exc:
                if _code(exc) in _MISSING:
                    return False
                raise
        return True

    def upload(self, local_path: Path, key: str) -> None:
        client = self._connect()
        with self._errors("upload", key):
            # upload_file switches to multipart for large videos; S3 shows the object only once complete.
            client.upload_file(str(local_path), self.bucket, self._full(key))

    def download(self, key: str, local_path: Path) -> None:
        client = self._connect()
        with self._errors("download", key):
            try:
                client.download_file(self.bucket, self._full(key), str(local_path))
            except Exception as exc:
                if _code(exc) in _MISSING:
                    raise FileNotFoundError(f"{self._describe(key)} does not exist") from None
                raise

    def delete(self, key: str) -> None:
        client = self._connect()
        with self._errors("delete", key):
            client.delete_object(Bucket=self.bucket, Key=self._full(key))

    # -- internals -----------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _describe(self, key: str = "") -> str:
        where = f"s3://{self.bucket}/{self._full(key)}" if key else f"bucket {self.bucket!r}"
        return f"{where} at {self.endpoint_url or 'the default AWS endpoint'}"

    def _connect(self) -> Any:
        """The client, made and checked once: a missing bucket or a dead endpoint is reported up front."""
        with self._lock:
            # A client made before a worker forked shares its sockets with the parent: make a fresh one.
            if self._client is None or self._client_pid != os.getpid():
                try:
                    import boto3
                    from botocore.config import Config
                except ImportError:
                    raise BackendUnavailable("VITRON_STORE_URL names an S3 store but boto3 is not installed",
                                             field="store_url", fix="pip install boto3") from None
                # A session per store: boto3's default session is not thread-safe to create clients from.
                config = Config(connect_timeout=5, read_timeout=60,
                                retries={"max_attempts": self._max_attempts, "mode": "standard"})
                client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
                with self._errors("open", ""):
                    client.head_bucket(Bucket=self.bucket)
                self._client, self._client_pid = client, os.getpid()
            return self._client

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn boto errors into `BackendUnavailable` that names the settings to check."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except NoCredentialsError:
            raise BackendUnavailable(f"no credentials to {action} {self._describe(key)}", field="store_url",
                                     fix="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)"
                                     ) from None
        except ClientError as exc:
            code = _code(exc)
            if code in _NO_BUCKET or (not key and code in _MISSING):
                raise BackendUnavailable(f"{self._describe()} does not exist", field="store_url",
                                         fix="create the bucket, or fix VITRON_STORE_URL / VITRON_S3_ENDPOINT_URL"
                                         ) from None
            if code in _DENIED:
                raise BackendUnavailable(f"access denied to {action} {self._describe(key)} ({code})",
                                         field="store_url", fix="check the AWS credentials and the bucket policy"
                                         ) from None
            raise BackendUnavailable(f"could not {action} {self._describe(key)}: {exc}", field="store_url",
                                     fix="check VITRON_STORE_URL and VITRON_S3_ENDPOINT_URL") from None
        except BotoCoreError as exc:
            raise BackendUnavailable(f"could not {action} {self._describe(key)}: {exc}", field="s3_endpoint_url",
                                     fix="check that VITRON_S3_ENDPOINT_URL is right and the service is up"
                                     ) from None


def _code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError ("404", "NoSuchBucket", …); "" for anything else."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
