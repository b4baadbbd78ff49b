"""The download of a backup object through a signed, short-lived link."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponseBase, HttpResponseForbidden
from django.views.decorators.http import require_GET

from accounts.decorators import otp_recheck_required

from .services import LinkRefused, backup_download_open


@require_GET
@login_required
# A whole school district's records: a fresh two-factor code, not just this morning's log-in.
@otp_recheck_required
def download(request: HttpRequest, token: str) -> HttpResponseBase:
    try:
        _run, reader, filename, size = backup_download_open(token=token, actor=request.user)
    except LinkRefused as exc:
        return HttpResponseForbidden(str(exc))
    response = FileResponse(
        reader, as_attachment=True, filename=filename, content_type="application/octet-stream"
    )
    if size is not None:
        response["Content-Length"] = str(size)
    response["Cache-Control"] = "no-store"
    return response
