"""Which school a user is working in, in which role, and what that lets them see.

The middleware in `school_site.middleware` attaches a `SchoolAccess` to every request as
`request.access`; views, admin, exports and the API scope their querysets through it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.db.models import QuerySet
from django.utils import timezone

from . import row_security
from .cache import RECORDS, school_cached, teaching_cache_bypass
from .identity import identity_cached
from .models import School, Section, SectionTeacher, StaffMember, Student

DISTRICT_ADMIN = "district_admin"
DISTRICT_ADMIN_GROUP = "District administrator"
# The Django group holding each role's permissions (created by a data migration).
ROLE_GROUPS: dict[str, str] = {
    DISTRICT_ADMIN: DISTRICT_ADMIN_GROUP,
    StaffMember.Role.SCHOOL_ADMIN: "School administrator",
    StaffMember.Role.REGISTRAR: "Registrar",
    StaffMember.Role.TEACHER: "Teacher",
    StaffMember.Role.AUDITOR: "Auditor",
}
ROLE_LABELS: dict[str, str] = {
    DISTRICT_ADMIN: "District administrator",
    **dict(StaffMember.Role.choices),
}
SESSION_KEY = "current_school_id"


@dataclass
class SchoolAccess:
    """A user working in one school in one role."""

    user: User
    school: School
    role: str
    staff: StaffMember | None = None
    schools: list[School] = field(default_factory=list)  # those the user may switch to

    @property
    def is_district_admin(self) -> bool:
        return self.role == DISTRICT_ADMIN

    @property
    def is_teacher(self) -> bool:
        return self.role == StaffMember.Role.TEACHER

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)

    @property
    def can_switch_school(self) -> bool:
        return len(self.schools) > 1

    @property
    def acting_schools(self) -> list[int] | str:
        """The schools PostgreSQL lets this access's queries see (students.row_security):
        a district administrator's district, anyone else's current school."""
        return row_security.EVERY_SCHOOL if self.is_district_admin else [self.school.pk]

    @cached_property
    def permissions(self) -> frozenset[str]:
        """The role's permissions as "app_label.codename" (cached for every user of the role)."""
        if getattr(self.user, "is_superuser", False):
            return identity_cached(self.user, "perms:superuser", _all_permissions, shared=True)
        group = ROLE_GROUPS[self.role]
        return identity_cached(
            self.user, f"perms:{group}", lambda: _group_permissions(group), shared=True
        )

    def has_perm(self, perm: str) -> bool:
        return perm in self.permissions

    @cached_property
    def taught_student_ids(self) -> frozenset[int]:
        """A teacher's students: an indexed query over their classes, cached under the
        school's records version (enrolments and class teachers are records: every change
        to them moves it on, as for the identity cache in students.identity)."""
        return self._teaching_today(
            "taught-by",
            lambda staff, today: (
                Student.objects.for_school(self.school)
                .taught_by(staff, on=today)  # type: ignore[attr-defined]
                .values_list("pk", flat=True)
            ),
        )

    @cached_property
    def taught_section_ids(self) -> frozenset[int]:
        """The sections a teacher teaches today (assignments within their dates: a substitute
        before or after theirs teaches nothing), cached like `taught_student_ids`."""
        return self._teaching_today(
            "teaches",
            lambda staff, today: (
                SectionTeacher.objects.filter(staff=staff)
                .current(today)
                .values_list("section_id", flat=True)
            ),
        )

    def _teaching_today(
        self, name: str, ids: Callable[[StaffMember, datetime.date], Iterable[int]]
    ) -> frozenset[int]:
        """Ids that follow from the teacher's assignments today, cached per teacher and day
        under the school's records version (assignments start and end on given days)."""
        staff = self.staff
        assert staff is not None  # noqa: S101 - resolve_access builds a teacher from a row
        today = timezone.localdate()

        def read() -> frozenset[int]:
            return frozenset(ids(staff, today))

        if teaching_cache_bypass():
            return read()
        return school_cached(
            self.school.pk,
            f"{name}:{staff.pk}:{today.isoformat()}",
            read,
            settings.IDENTITY_CACHE_TIMEOUT,
            topics=(RECORDS,),
        )

    def students(self) -> QuerySet[Student]:
        """Students this user may see: the school's, and for a teacher only their sections'."""
        qs = Student.objects.for_school(self.school)
        if self.is_teacher:
            # By primary key from a list, not as a subquery: with the subquery PostgreSQL ran
            # a search's full-text and trigram tests over every student of the school before
            # keeping the teacher's thirty (10-20 ms a search under load, not 1).
            qs = qs.filter(pk__in=self.taught_student_ids)
        return qs

    def sections(self) -> QuerySet[Section]:
        qs = Section.objects.for_school(self.school)
        if self.is_teacher:
            qs = qs.filter(pk__in=self.taught_section_ids)
        return qs


def _all_permissions() -> frozenset[str]:
    rows = Permission.objects.values_list("content_type__app_label", "codename")
    return frozenset(f"{app}.{code}" for app, code in rows)


def _group_permissions(group: str) -> frozenset[str]:
    rows = Permission.objects.filter(group__name=group).values_list(
        "content_type__app_label", "codename"
    )
    return frozenset(f"{app}.{code}" for app, code in rows)


def activate(access: SchoolAccess | None, *, one_school: bool = False) -> SchoolAccess | None:
    """Act for the access's schools for the rest of the request or task (row-level
    security); no access acts for none. `one_school`: its current school alone, whatever
    the role (an API token is bound to one school)."""
    if access is not None:
        row_security.act_for([access.school.pk] if one_school else access.acting_schools)
    return access


def is_district_admin(user: User | AnonymousUser) -> bool:
    if not user.is_authenticated:
        return False
    if getattr(user, "is_superuser", False):
        return True
    return identity_cached(
        user, "district", lambda: user.groups.filter(name=DISTRICT_ADMIN_GROUP).exists()
    )


def _memberships(user: User) -> list[StaffMember]:
    """The user's active memberships in active schools, their schools loaded, by school name.
    Read before any school is chosen: row-level security admits a user's own memberships."""
    with row_security.acting_for(user_id=user.pk):
        return list(
            StaffMember.objects.filter(user=user, is_active=True, school__is_active=True)
            .select_related("school")
            .order_by("school__name")
        )


def resolve_access(
    user: User | AnonymousUser, requested_school_id: int | None
) -> SchoolAccess | None:
    """The access for `user`, in the requested school when allowed, else their first school.

    The schools and memberships come from the identity cache (students.identity): a cached
    page then pays for who is asking with the session's user row alone."""
    if not user.is_authenticated or not user.is_active:
        return None
    if is_district_admin(user):
        schools = identity_cached(
            user, "active-schools", lambda: list(School.objects.filter(is_active=True)), shared=True
        )
        if not schools:
            return None
        chosen = next((s for s in schools if s.pk == requested_school_id), schools[0])
        return SchoolAccess(user=user, school=chosen, role=DISTRICT_ADMIN, schools=schools)
    memberships = identity_cached(user, "memberships", lambda: _memberships(user))  # type: ignore[arg-type]
    if not memberships:
        return None
    chosen_m = next((m for m in memberships if m.school_id == requested_school_id), memberships[0])
    return SchoolAccess(
        user=user,  # type: ignore[arg-type]
        school=chosen_m.school,
        role=chosen_m.role,
        staff=chosen_m,
        schools=[m.school for m in memberships],
    )
