"""Periodic jobs, the admin console and the role permissions of the documents app."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from files import tasks
from files.models import Document, StoredObject
from tests.files.factories import make_document, pdf_bytes

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

FILES_TASKS = {
    "files.tasks.purge_deleted_documents",
    "files.tasks.remove_abandoned_uploads",
    "files.tasks.replicate_pending",
    "files.tasks.report_orphaned_objects",
}


def test_periodic_jobs_are_declared_and_written_into_beat() -> None:
    call_command("setup_periodic_tasks", verbosity=0)
    written = set(PeriodicTask.objects.values_list("task", flat=True))
    assert FILES_TASKS <= written
    from school_site.celery import app

    app.loader.import_default_modules()
    assert FILES_TASKS <= set(app.tasks)


def test_tasks_take_ids_and_run_their_services(world) -> None:
    document = make_document(world, content=pdf_bytes("old"))
    Document.objects.filter(pk=document.pk).update(
        deleted_at=timezone.now() - datetime.timedelta(days=40)
    )
    assert tasks.purge_deleted_documents.delay().get() == {"documents": 1, "objects": 1}
    assert not StoredObject.objects.exists()
    assert tasks.report_orphaned_objects.delay().get()["orphans"] == 0
    assert tasks.remove_abandoned_uploads.delay().get() == 0
    assert tasks.replicate_pending.delay().get() == 0  # not a hybrid deployment


def test_admin_lists_only_the_schools_documents(client, world, other_world) -> None:
    mine = make_document(world, title="Ours")
    theirs = make_document(other_world, title="Theirs")
    client.force_login(world.admin)
    listing = client.get(reverse("admin:files_document_changelist"))
    assert listing.status_code == 200
    assert {d.pk for d in listing.context["cl"].result_list} == {mine.pk}
    change = client.get(reverse("admin:files_document_change", args=[theirs.pk]))
    assert change.status_code in (302, 404)
    own = client.get(reverse("admin:files_document_change", args=[mine.pk]))
    assert own.status_code == 200 and "Open the version history" in own.content.decode()
    version_page = client.get(
        reverse("admin:files_documentversion_change", args=[mine.current_version.pk])
    )
    assert version_page.status_code == 200 and mine.current_version.sha256 in (
        version_page.content.decode()
    )
    versions = client.get(reverse("admin:files_documentversion_changelist"))
    assert {v.document_id for v in versions.context["cl"].result_list} == {mine.pk}
    # Versions are immutable; documents are born with an upload, not in the admin.
    assert client.get(reverse("admin:files_document_add")).status_code == 403
    assert client.get(reverse("admin:files_documentversion_add")).status_code == 403


def test_admin_trash_action_is_the_soft_delete(client, world) -> None:
    document = make_document(world)
    client.force_login(world.admin)
    client.post(
        reverse("admin:files_document_changelist"),
        {"action": "move_to_trash", "_selected_action": [document.pk]},
    )
    document.refresh_from_db()
    assert document.is_deleted and StoredObject.objects.exists()
    client.post(
        reverse("admin:files_document_changelist"),
        {"action": "take_out_of_trash", "_selected_action": [document.pk]},
    )
    document.refresh_from_db()
    assert not document.is_deleted


def test_roles_carry_document_permissions() -> None:
    def perms(group: str) -> set[str]:
        return set(
            Group.objects.get(name=group)
            .permissions.filter(content_type__app_label="files")
            .values_list("codename", flat=True)
        )

    assert {"add_document", "view_sensitive_document"} <= perms("Registrar")
    assert "delete_document" not in perms("Registrar")
    assert perms("Teacher") == {"view_document", "view_documentversion"}
    assert not {p for p in perms("Auditor") if not p.startswith("view_")}
    assert "delete_document" in perms("School administrator")
    # The students app's own permissions survive our additions.
    assert Group.objects.get(name="Teacher").permissions.filter(codename="view_student").exists()
