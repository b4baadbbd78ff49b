"""The site's only upload handler: stream every uploaded file to a temporary file on disk,
hashing it on the way, and stop reading once it passes the largest size we accept.

With this handler alone in FILE_UPLOAD_HANDLERS a 1 GB upload never sits in memory: Django
hands us the body in 64 KB chunks, each goes to the hash and to the temporary file, and is
dropped. The sha256 is ready when the last byte arrives, so storing the document does not
read the file a second time just to name it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler

# Set on the request when an upload was cut off for size, so the view can say why the file
# is missing instead of "this field is required".
REFUSED_ATTR = "upload_refused_too_large"


class HashingTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    chunk_size = 256 * 1024

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.sha256 = hashlib.sha256()
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > settings.DOCUMENTS_MAX_UPLOAD_BYTES:
            # The parser closes (and so deletes) the partial temporary file and reads the rest
            # of the body without keeping it, so the client still gets our answer.
            if self.request is not None:
                setattr(self.request, REFUSED_ATTR, True)
            raise StopUpload(connection_reset=False)
        self.sha256.update(raw_data)
        self.file.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> UploadedFile | None:
        uploaded = super().file_complete(file_size)
        if uploaded is not None:
            uploaded.sha256 = self.sha256.hexdigest()  # type: ignore[attr-defined]
        return uploaded
