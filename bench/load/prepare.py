"""The Django side of the load benchmark, run as `python -m bench.load.prepare` with the
benchmark's environment (its database, its Redis):

    accounts --users N --out plan.json   staff accounts, logged-in sessions and the scenario plan
    queries --since ISO                  DB queries per request and route, from RequestMinute

Sessions are created here rather than through the login form: PBKDF2 with Django's default
1,000,000 iterations costs ~0.5 s of CPU per login, and 500 users logging in during the ramp-up
would measure the password hasher, not the pages a working day consists of.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# A fixed CSRF secret per user: Django accepts any 32-character alphanumeric cookie value and
# masks it into each page's form token, which the scenario reads back from the page.
CSRF_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "school_site.settings")
    import django

    django.setup()


def _pdf_bytes(title: str) -> bytes:
    from reportlab.pdfgen.canvas import Canvas

    buffer = io.BytesIO()
    canvas = Canvas(buffer)
    canvas.drawString(72, 720, title)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def accounts(*, users: int, registrar_share: float, out: Path) -> None:
    """Pick teachers (seeded, one per class), create registrars as needed, log each in and
    write what every simulated user needs to `out`."""
    _setup()
    import secrets

    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages
    from django.db import transaction
    from django.utils import timezone

    from files.models import Document
    from files.services import document_create
    from students.models import (
        Assessment,
        School,
        SectionTeacher,
        StaffMember,
        Student,
        Term,
    )
    from students.services import staff_member_create
    from students.tenancy import SESSION_KEY as SCHOOL_SESSION_KEY

    try:
        from accounts.services import LAST_SEEN_KEY
    except ImportError:  # a checkout without the session idle timeout
        LAST_SEEN_KEY = ""

    user_model = get_user_model()
    schools = list(School.objects.filter(is_active=True).order_by("pk"))
    if not schools:
        sys.exit("no schools: seed the database first")
    registrars = round(users * registrar_share)
    teachers = users - registrars
    today = timezone.localdate()

    # Teachers, spread over the schools round-robin so every school gets load.
    links_by_school: dict[int, list[SectionTeacher]] = {s.pk: [] for s in schools}
    for link in (
        SectionTeacher.objects.filter(
            section__academic_year__is_current=True, staff__is_active=True
        )
        .select_related("staff__user", "section")
        .order_by("section_id")
    ):
        links_by_school[link.school_id].append(link)
    chosen: list[SectionTeacher] = []
    depth = 0
    while len(chosen) < teachers:
        row = [links[depth] for links in links_by_school.values() if depth < len(links)]
        if not row:
            sys.exit(f"only {len(chosen)} teachers in the data set, {teachers} wanted")
        chosen.extend(row[: teachers - len(chosen)])
        depth += 1

    plan: list[dict[str, Any]] = []
    section_ids = [link.section_id for link in chosen]
    students_by_section: dict[int, list[int]] = {}
    for sid, pk in Student.objects.filter(
        enrollments__section_id__in=section_ids, enrollments__ended_on__isnull=True
    ).values_list("enrollments__section_id", "pk"):
        students_by_section.setdefault(sid, []).append(pk)
    assessments_by_section: dict[int, list[int]] = {}
    for sid, pk in Assessment.objects.filter(section_id__in=section_ids).values_list(
        "section_id", "pk"
    ):
        assessments_by_section.setdefault(sid, []).append(pk)
    terms_by_school: dict[int, list[int]] = {s.pk: [] for s in schools}
    for school_id, pk in (
        Term.objects.filter(academic_year__is_current=True, starts_on__lte=today)
        .order_by("starts_on")
        .values_list("school_id", "pk")
    ):
        terms_by_school[school_id].append(pk)

    with transaction.atomic():
        # One school document per school, to download: teachers see school-wide documents.
        downloads: dict[int, int] = {}
        for school in schools:
            doc = (
                Document.objects.filter(school=school, student=None, title="Bench handbook")
                .exclude(current_version=None)
                .select_related("current_version")
                .first()
            )
            stored = doc is not None and storages["documents"].exists(
                doc.current_version.storage_key  # type: ignore[union-attr]
            )
            if not stored:
                # The dataset is shared between checkouts, the stored files are not (each
                # keeps them under its own var/bench_load): store a fresh handbook here.
                doc = None
            if doc is None:
                actor = StaffMember.objects.filter(school=school).select_related("user").first()
                doc = document_create(
                    school=school,
                    student=None,
                    title="Bench handbook",
                    category=Document.Category.OTHER,
                    sensitive=False,
                    file=ContentFile(_pdf_bytes(f"{school.name} handbook"), name="handbook.pdf"),
                    actor=actor.user if actor else None,
                )
            downloads[school.pk] = doc.current_version_id  # type: ignore[assignment]

        for link in chosen:
            plan.append(
                {
                    "role": "teacher",
                    "user_id": link.staff.user_id,
                    "username": link.staff.user.username,
                    "school_id": link.school_id,
                    "section_id": link.section_id,
                    "students": students_by_section.get(link.section_id, []),
                    "assessments": assessments_by_section.get(link.section_id, []),
                    "terms": terms_by_school[link.school_id],
                    "download_version": downloads[link.school_id],
                }
            )
        for n in range(registrars):
            school = schools[n % len(schools)]
            username = f"bench-registrar{n // len(schools) + 1}-{school.code}"
            user, created = user_model.objects.get_or_create(
                username=username,
                defaults={"first_name": "Bench", "last_name": f"Registrar {n + 1}"},
            )
            if created:
                user.set_unusable_password()  # sessions are made here; nobody logs in with it
                user.save()
                staff_member_create(
                    school=school, user=user, role=StaffMember.Role.REGISTRAR, actor=None
                )
            # A registrar works school-wide: give each a class to take attendance for too.
            links = links_by_school[school.pk]
            section_id = links[n % len(links)].section_id if links else None
            plan.append(
                {
                    "role": "registrar",
                    "user_id": user.pk,
                    "username": username,
                    "school_id": school.pk,
                    "section_id": section_id,
                    "students": list(
                        Student.objects.filter(
                            enrollments__section_id=section_id, enrollments__ended_on__isnull=True
                        ).values_list("pk", flat=True)
                    ),
                    "assessments": list(
                        Assessment.objects.filter(section_id=section_id).values_list(
                            "pk", flat=True
                        )
                    ),
                    "terms": terms_by_school[school.pk],
                    "download_version": downloads[school.pk],
                }
            )

    users_by_pk = {u.pk: u for u in user_model.objects.filter(pk__in=[p["user_id"] for p in plan])}
    for entry in plan:
        user = users_by_pk[entry["user_id"]]
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "accounts.backends.CachedModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session[SCHOOL_SESSION_KEY] = entry["school_id"]
        if LAST_SEEN_KEY:  # as a password login leaves it: the idle timeout's clock
            session[LAST_SEEN_KEY] = int(time.time())
        session.create()
        entry["sessionid"] = session.session_key
        entry["csrftoken"] = "".join(secrets.choice(CSRF_ALPHABET) for _ in range(32))
    out.write_text(json.dumps(plan))
    print(f"{len(plan)} users ({teachers} teachers, {registrars} registrars) -> {out}")


def queries(*, since: str) -> None:
    """Print {route: {requests, queries_per_request, server_errors}} for minutes >= since."""
    _setup()
    from django.db.models import Sum

    from monitoring.models import RequestMinute

    rows = (
        RequestMinute.objects.using("monitoring")
        .filter(minute__gte=datetime.datetime.fromisoformat(since))
        .values("route")
        .annotate(
            n=Sum("requests"),
            q=Sum("queries_sum"),
            e=Sum("server_errors"),
            c=Sum("client_errors"),
        )
    )
    print(
        json.dumps(
            {
                r["route"]: {
                    "requests": r["n"],
                    "queries_per_request": round(r["q"] / r["n"], 1) if r["n"] else None,
                    "server_errors": r["e"],
                    "client_errors": r["c"],
                }
                for r in rows
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load.prepare")
    sub = parser.add_subparsers(dest="command", required=True)
    acc = sub.add_parser("accounts")
    acc.add_argument("--users", type=int, required=True)
    acc.add_argument("--registrar-share", type=float, default=0.2)
    acc.add_argument("--out", type=Path, required=True)
    qs = sub.add_parser("queries")
    qs.add_argument("--since", required=True)
    args = parser.parse_args()
    if args.command == "accounts":
        accounts(users=args.users, registrar_share=args.registrar_share, out=args.out)
    else:
        queries(since=args.since)


if __name__ == "__main__":
    main()
