"""Cloud Storage adapter (google-cloud-storage)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from distillery.adapters._errors import translate_google_errors
from distillery.core.errors import ObjectNotFoundError
from distillery.core.ports import ObjectInfo, ObjectStore

if TYPE_CHECKING:
    import google.cloud.storage as storage

#: Read datasets in chunks of this size: large enough for throughput, small enough for memory.
READ_CHUNK_BYTES = 8 << 20


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(
        bucket=blob.bucket.name,
        name=blob.name,
        generation=int(blob.generation),
        size=int(blob.size or 0),
        content_type=blob.content_type,
    )


class GcsObjectStore(ObjectStore):
    """Objects in Cloud Storage (or fake-gcs-server through ``STORAGE_EMULATOR_HOST``)."""

    def __init__(self, client: storage.Client | None = None, *, project: str | None = None) -> None:
        self._client = client
        self._project = project

    @property
    def client(self) -> storage.Client:
        """The storage client, built on first use."""
        if self._client is None:
            import google.cloud.storage as storage

            self._client = storage.Client(project=self._project or None)
        return self._client

    def _blob(self, bucket: str, name: str, generation: int | None) -> Any:
        with translate_google_errors(f"reading gs://{bucket}/{name}"):
            blob = self.client.bucket(bucket).get_blob(name, generation=generation)
        if blob is None or (generation is not None and int(blob.generation) != generation):
            suffix = f" at generation {generation}" if generation is not None else ""
            raise ObjectNotFoundError(f"gs://{bucket}/{name}{suffix} does not exist")
        return blob

    def stat(self, bucket: str, name: str, generation: int | None = None) -> ObjectInfo:
        return _info(self._blob(bucket, name, generation))

    @contextmanager
    def open_read(
        self, bucket: str, name: str, generation: int | None = None
    ) -> Iterator[BinaryIO]:
        # The blob fetched with its generation pins every ranged read to that exact generation.
        blob = self._blob(bucket, name, generation)
        with translate_google_errors(f"reading gs://{bucket}/{name}"):
            reader = blob.open("rb", chunk_size=READ_CHUNK_BYTES)
            try:
                yield reader
            finally:
                reader.close()

    def write_bytes(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
    ) -> ObjectInfo:
        blob = self.client.bucket(bucket).blob(name)
        with translate_google_errors(f"writing gs://{bucket}/{name}"):
            blob.upload_from_string(
                data,
                content_type=content_type,
                if_generation_match=0 if if_absent else None,
            )
        return _info(blob)

    def copy(
        self,
        bucket: str,
        name: str,
        generation: int,
        dest_bucket: str,
        dest_name: str,
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        source = self.client.bucket(bucket)
        with translate_google_errors(
            f"copying gs://{bucket}/{name} to gs://{dest_bucket}/{dest_name}"
        ):
            copied = source.copy_blob(
                source.blob(name),
                self.client.bucket(dest_bucket),
                dest_name,
                source_generation=generation,
                if_generation_match=0 if if_absent else None,
            )
        return _info(copied)

    def list_names(self, bucket: str, prefix: str) -> list[str]:
        # The client pages through the listing itself; only names are kept, never contents.
        with translate_google_errors(f"listing gs://{bucket}/{prefix}"):
            names = [blob.name for blob in self.client.list_blobs(bucket, prefix=prefix)]
        return sorted(names)
