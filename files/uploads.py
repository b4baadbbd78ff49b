"""The site's only upload handler: stream every uploaded file to a temporary file on disk,
hashing it on the way, and stop reading once it passes the largest size we accept.

With this handler alone in FILE_UPLOAD_HANDLERS a 1 GB upload never sits in memory: Django
hands us the body in 64 KB chunks, each goes to the hash and to the temporary file, and is
dropped. The sha256 is ready when the last byte arrives, so storing the document does not
read the file a second time just to name it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from .validation import MAX_EXTENSION_LENGTH

logger = logging.getLogger(__name__)

# Set on the request when an upload was cut off (too large, or no room left for its temporary
# file), so the view can say why the file is missing instead of "this field is required".
REFUSED_ATTR = "upload_refused"
TOO_LARGE = "too_large"
NO_SPACE = "no_space"


def upload_refusal(request: HttpRequest) -> str | None:
    """Why this request's upload was cut off, in words for the person who sent it; None if it
    was not."""
    reason = getattr(request, REFUSED_ATTR, None)
    if reason == TOO_LARGE:
        return (
            f"The file is larger than {filesizeformat(settings.DOCUMENTS_MAX_UPLOAD_BYTES)}, "
            "the largest accepted. Nothing was saved."
        )
    if reason == NO_SPACE:
        return (
            "The server has no room left to receive this upload (its disk is full). Nothing was "
            "saved; please tell your administrator."
        )
    return None


class HashingTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    chunk_size = 256 * 1024

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        # Django names the temporary file "<random>.upload<extension of the upload>"; a made-up
        # extension of hundreds of letters makes that longer than the file system allows
        # (OSError, a 500). The temporary file then goes without it; the upload keeps its name.
        stem, ext = os.path.splitext(file_name)
        temporary_name = stem if len(ext) > MAX_EXTENSION_LENGTH else file_name
        super().new_file(field_name, temporary_name, *args, **kwargs)
        self.file_name = file_name
        self.file.name = file_name
        self.sha256 = hashlib.sha256()
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > settings.DOCUMENTS_MAX_UPLOAD_BYTES:
            self._refuse(TOO_LARGE)
        self.sha256.update(raw_data)
        try:
            self.file.write(raw_data)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            logger.error("No room for an upload's temporary file in %s", self.file.name)
            self._refuse(NO_SPACE)
        return None

    def _refuse(self, reason: str) -> None:
        # The parser closes (and so deletes) the partial temporary file and reads the rest of
        # the body without keeping it, so the client still gets our answer.
        if self.request is not None:
            setattr(self.request, REFUSED_ATTR, reason)
        raise StopUpload(connection_reset=False)

    def file_complete(self, file_size: int) -> UploadedFile | None:
        uploaded = super().file_complete(file_size)
        if uploaded is not None:
            uploaded.sha256 = self.sha256.hexdigest()  # type: ignore[attr-defined]
        return uploaded
