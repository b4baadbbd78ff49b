"""Realistic, deterministic demo data, written with bulk inserts.

Used by `make run` (through `seed_demo`), by benchmarks and by tests. The same seed and the
same day give the same schools, people, classes, attendance and grades.
"""

from __future__ import annotations

import datetime
import math
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record

from .cache import school_cache_bump
from .identity import identity_invalidate
from .models import (
    AcademicYear,
    Assessment,
    AttendanceRecord,
    Enrollment,
    Grade,
    GradeLevel,
    Guardian,
    School,
    Section,
    SectionTeacher,
    StaffMember,
    Student,
    StudentGuardian,
    Subject,
    Term,
)
from .tenancy import ROLE_GROUPS

FIRST_NAMES = (
    "Amara Ben Chloe Daniel Elena Farah Gabriel Hana Isaac Jada Kofi Lena Mateo Nadia Omar "
    "Priya Quinn Rosa Samuel Tariq Uma Victor Wen Ximena Yusuf Zoe Aiden Bianca Caleb Dalia "
    "Elijah Fatima Gianna Hugo Iris Jonah Keira Liam Maya Noah Olivia Pedro Rania Sofia Theo "
    "Valentina William Yara Zane Ava Lucas Mia Ethan Ines Leo Nora Oscar Ruby Kai Emma Jamal"
).split()
LAST_NAMES = (
    "Abbott Adeyemi Alvarez Andersen Baker Becker Chen Costa Diaz Dubois Edwards Evans Fischer "
    "Garcia Gonzalez Haddad Hansen Ito Jensen Johnson Kim Kowalski Larsen Lee Lopez Martin "
    "Meyer Mitchell Moreau Nakamura Nguyen Novak Okafor Olsen Patel Perez Quinn Ramirez "
    "Rossi Santos Schmidt Silva Singh Smith Sousa Suzuki Tanaka Thompson Turner Vasquez "
    "Wagner Walker Weber Williams Wilson Wright Yamamoto Young Zhang Zimmermann"
).split()
SCHOOL_NAMES = [
    ("Northside Middle School", "north"),
    ("Riverside Elementary", "river"),
    ("Hillcrest High School", "hill"),
    ("Lakeview Academy", "lake"),
    ("Oakwood Primary", "oak"),
    ("Maple Grove School", "maple"),
    ("Cedar Park School", "cedar"),
    ("Brookfield Middle School", "brook"),
    ("Pinecrest Elementary", "pine"),
    ("Westfield High School", "west"),
    ("Eastgate Primary", "east"),
    ("Southview School", "south"),
]
SUBJECTS = [
    ("MATH", "Mathematics"),
    ("ENG", "English"),
    ("SCI", "Science"),
    ("HIST", "History"),
    ("ART", "Art"),
    ("PE", "Physical education"),
]
GRADE_LEVELS = [f"Grade {n}" for n in range(1, 7)]
STUDENTS_PER_SECTION = 28
# Attendance mix of a typical school day.
ATTENDANCE_WEIGHTS = [
    (AttendanceRecord.Status.PRESENT, 0.92),
    (AttendanceRecord.Status.ABSENT, 0.04),
    (AttendanceRecord.Status.LATE, 0.025),
    (AttendanceRecord.Status.EXCUSED, 0.015),
]
BATCH = 5000


def demo_password() -> str:
    """The demo accounts' password: DEMO_PASSWORD, or one generated once and kept in var/."""
    from_env = getattr(settings, "DEMO_PASSWORD", "")
    if from_env:
        return from_env
    path = Path(settings.VAR_DIR) / "demo-password.txt"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = "demo-" + secrets.token_urlsafe(9)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


def school_year_for(day: datetime.date) -> tuple[datetime.date, datetime.date]:
    start_year = day.year if day.month >= 8 else day.year - 1
    return datetime.date(start_year, 8, 25), datetime.date(start_year + 1, 6, 30)


def school_days(start: datetime.date, end: datetime.date) -> list[datetime.date]:
    days = []
    day = start
    while day <= end:
        if day.weekday() < 5:
            days.append(day)
        day += datetime.timedelta(days=1)
    return days


@dataclass
class DemoResult:
    schools: int = 0
    students: int = 0
    guardians: int = 0
    staff: int = 0
    sections: int = 0
    attendance: int = 0
    grades: int = 0


Progress = Callable[[str], None]


def demo_data_create(
    *,
    schools: int = 3,
    students_per_school: int = 2000,
    seed: int = 42,
    today: datetime.date | None = None,
    attendance_days: int | None = None,
    progress: Progress | None = None,
) -> DemoResult:
    """Create `schools` schools with their year, classes, staff, students, guardians,
    attendance from the start of the year (or the last `attendance_days` school days) up to
    `today`, and graded assessments. One transaction: it appears whole or not at all."""
    today = today or timezone.localdate()
    rng = random.Random(seed)
    say = progress or (lambda _msg: None)
    result = DemoResult()
    password_hash = make_password(demo_password())  # hashed once: PBKDF2 per user is slow
    existing = School.objects.count()
    with transaction.atomic():
        for index in range(existing, existing + schools):
            name, code = SCHOOL_NAMES[index % len(SCHOOL_NAMES)]
            if index >= len(SCHOOL_NAMES):
                name, code = f"{name} {index // len(SCHOOL_NAMES) + 1}", f"{code}{index}"
            say(f"{name}: building")
            _school(
                rng=rng,
                name=name,
                code=code,
                students=students_per_school,
                today=today,
                attendance_days=attendance_days,
                password_hash=password_hash,
                result=result,
                say=say,
            )
        # Users, memberships and role links went in with bulk_create, which sends no
        # signals: the cached identities must not outlive a reseed.
        identity_invalidate(None)
    return result


def _school(
    *,
    rng: random.Random,
    name: str,
    code: str,
    students: int,
    today: datetime.date,
    attendance_days: int | None,
    password_hash: str,
    result: DemoResult,
    say: Progress,
) -> None:
    school = School.objects.create(
        name=name,
        code=code,
        address=f"{rng.randint(1, 999)} School Lane",
        phone=f"555-{rng.randint(1000, 9999)}",
        email=f"office@{code}.example.org",
        principal_name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
    )
    result.schools += 1
    year_start, year_end = school_year_for(today)
    year = AcademicYear.objects.create(
        school=school,
        name=f"{year_start.year}-{year_end.year}",
        starts_on=year_start,
        ends_on=year_end,
        is_current=True,
    )
    term_bounds = [
        ("Term 1", year_start, datetime.date(year_start.year, 12, 19)),
        ("Term 2", datetime.date(year_end.year, 1, 5), datetime.date(year_end.year, 3, 27)),
        ("Term 3", datetime.date(year_end.year, 4, 7), year_end),
    ]
    terms = Term.objects.bulk_create(
        Term(school=school, academic_year=year, name=n, starts_on=s, ends_on=e)
        for n, s, e in term_bounds
    )
    levels = GradeLevel.objects.bulk_create(
        GradeLevel(school=school, name=n, order=i + 1) for i, n in enumerate(GRADE_LEVELS)
    )
    subjects = Subject.objects.bulk_create(
        Subject(school=school, code=c, name=n) for c, n in SUBJECTS
    )

    # Staff: a principal, a registrar, an auditor and one lead teacher per section.
    per_level = math.ceil(students / len(levels))
    sections_per_level = max(1, math.ceil(per_level / STUDENTS_PER_SECTION))
    user_model = get_user_model()
    staff_specs = [
        ("principal", StaffMember.Role.SCHOOL_ADMIN, "Principal"),
        ("registrar", StaffMember.Role.REGISTRAR, "Registrar"),
        ("auditor", StaffMember.Role.AUDITOR, "Auditor"),
    ]
    staff_specs += [
        (f"teacher{n + 1}", StaffMember.Role.TEACHER, "Teacher")
        for n in range(len(levels) * sections_per_level)
    ]
    users = user_model.objects.bulk_create(
        user_model(
            username=f"{handle}-{code}",
            first_name=rng.choice(FIRST_NAMES),
            last_name=rng.choice(LAST_NAMES),
            email=f"{handle}@{code}.example.org",
            password=password_hash,
            is_staff=(role == StaffMember.Role.SCHOOL_ADMIN),
        )
        for handle, role, _title in staff_specs
    )
    members = StaffMember.objects.bulk_create(
        StaffMember(school=school, user=user, role=role, title=title)
        for user, (_h, role, title) in zip(users, staff_specs, strict=True)
    )
    groups = {g.name: g for g in Group.objects.filter(name__in=ROLE_GROUPS.values())}
    through = user_model.groups.through
    through.objects.bulk_create(
        through(user_id=m.user_id, group_id=groups[ROLE_GROUPS[m.role]].pk) for m in members
    )
    teachers = [m for m in members if m.role == StaffMember.Role.TEACHER]
    result.staff += len(members)

    sections = Section.objects.bulk_create(
        Section(
            school=school,
            academic_year=year,
            grade_level=level,
            name=f"{level.order}{chr(ord('A') + s)}",
            room=f"{level.order}{s + 1:02d}",
            capacity=STUDENTS_PER_SECTION + 4,
        )
        for level in levels
        for s in range(sections_per_level)
    )
    SectionTeacher.objects.bulk_create(
        SectionTeacher(school=school, section=section, staff=teacher)
        for section, teacher in zip(sections, teachers, strict=True)
    )
    result.sections += len(sections)

    # Students and their guardians.
    say(f"{name}: {students} students")
    student_rows = []
    for n in range(students):
        level = levels[n % len(levels)]
        age = 5 + level.order
        birth = datetime.date(year_start.year - age, 1, 1) + datetime.timedelta(
            days=rng.randint(0, 364)
        )
        student_rows.append(
            Student(
                school=school,
                student_number=f"{code.upper()}-{n + 1:05d}",
                first_name=rng.choice(FIRST_NAMES),
                last_name=rng.choice(LAST_NAMES),
                date_of_birth=birth,
                grade_level=level,
                admitted_on=year_start,
                gender=rng.choice(["female", "male", ""]),
                medical_notes=rng.choice(["", "", "", "", "Peanut allergy", "Asthma (inhaler)"]),
            )
        )
    student_rows = Student.objects.bulk_create(student_rows, batch_size=BATCH)
    guardian_rows, link_specs = [], []
    for student in student_rows:
        count = 1 if rng.random() < 0.3 else 2
        for g in range(count):
            first = rng.choice(FIRST_NAMES)
            guardian_rows.append(
                Guardian(
                    school=school,
                    first_name=first,
                    last_name=student.last_name,
                    email=f"{first.lower()}.{student.last_name.lower()}"
                    f"{rng.randint(1, 999)}@example.net",
                    phone=f"555-{rng.randint(1000, 9999)}",
                )
            )
            relationship = [
                StudentGuardian.Relationship.MOTHER,
                StudentGuardian.Relationship.FATHER,
            ][g % 2]
            link_specs.append((student, relationship, g == 0))
    guardian_rows = Guardian.objects.bulk_create(guardian_rows, batch_size=BATCH)
    StudentGuardian.objects.bulk_create(
        (
            StudentGuardian(school=school, student=s, guardian=g, relationship=rel, is_primary=prim)
            for (s, rel, prim), g in zip(link_specs, guardian_rows, strict=True)
        ),
        batch_size=BATCH,
    )
    result.students += len(student_rows)
    result.guardians += len(guardian_rows)

    # Enrollment: fill each level's sections in turn.
    sections_by_level: dict[int, list[Section]] = {}
    for section in sections:
        sections_by_level.setdefault(section.grade_level_id, []).append(section)
    roster: dict[int, list[Student]] = {s.pk: [] for s in sections}
    enrollments = []
    for i, student in enumerate(student_rows):
        options = sections_by_level[levels[i % len(levels)].pk]
        section = options[(i // len(levels)) % len(options)]
        roster[section.pk].append(student)
        enrollments.append(
            Enrollment(
                school=school,
                student=student,
                academic_year=year,
                section=section,
                started_on=year_start,
            )
        )
    Enrollment.objects.bulk_create(enrollments, batch_size=BATCH)

    # Attendance for every school day of the year so far.
    days = school_days(year_start, min(today, year_end))
    if attendance_days is not None:
        days = days[-attendance_days:] if attendance_days else []
    say(f"{name}: attendance for {len(days)} school days")
    statuses = [s for s, _w in ATTENDANCE_WEIGHTS]
    weights = [w for _s, w in ATTENDANCE_WEIGHTS]
    now = timezone.now()
    batch: list[AttendanceRecord] = []
    for day in days:
        for section in sections:
            marks = rng.choices(statuses, weights, k=len(roster[section.pk]))
            for student, status in zip(roster[section.pk], marks, strict=True):
                batch.append(
                    AttendanceRecord(
                        school=school,
                        student=student,
                        section=section,
                        date=day,
                        status=status,
                        recorded_at=now,
                    )
                )
        if len(batch) >= BATCH:
            AttendanceRecord.objects.bulk_create(batch)
            result.attendance += len(batch)
            batch = []
    AttendanceRecord.objects.bulk_create(batch)
    result.attendance += len(batch)

    # Two assessed pieces of work per subject in every term already begun.
    say(f"{name}: assessments and grades")
    assessments = []
    for term in terms:
        if term.starts_on > today:
            continue
        for section in sections:
            for subject in subjects:
                for k, kind in enumerate(["Quiz", "Test"]):
                    due = term.starts_on + datetime.timedelta(days=21 * (k + 1))
                    if due > today:
                        continue
                    max_score = Decimal(20 if kind == "Quiz" else 100)
                    assessments.append(
                        Assessment(
                            school=school,
                            section=section,
                            subject=subject,
                            term=term,
                            name=f"{subject.name} {kind.lower()} {k + 1}",
                            max_score=max_score,
                            weight=Decimal("1.00") if kind == "Quiz" else Decimal("2.00"),
                            due_on=due,
                        )
                    )
    assessments = Assessment.objects.bulk_create(assessments, batch_size=BATCH)
    grades = []
    for assessment in assessments:
        for student in roster[assessment.section_id]:
            share = min(1.0, max(0.0, rng.gauss(0.75, 0.14)))
            grades.append(
                Grade(
                    school=school,
                    assessment=assessment,
                    student=student,
                    # Marks in half points, as teachers give them.
                    score=Decimal(round(float(assessment.max_score) * share * 2)) / 2,
                    max_score=assessment.max_score,
                    updated_at=now,
                )
            )
    Grade.objects.bulk_create(grades, batch_size=BATCH)
    result.grades += len(grades)
    audit_record(
        actor=None,
        action="demo_data_create",
        target=school,
        changes={"students": len(student_rows)},
    )
    school_cache_bump(school.pk)


@transaction.atomic
def demo_admin_ensure() -> str:
    """The district-wide demo administrator `admin`, with the demo password. Returns it."""
    password = demo_password()
    user_model = get_user_model()
    admin, created = user_model.objects.get_or_create(
        username="admin",
        defaults={
            "email": "admin@example.org",
            "is_staff": True,
            "is_superuser": True,
            "first_name": "District",
            "last_name": "Administrator",
        },
    )
    if created or not admin.check_password(password):
        admin.set_password(password)
        admin.save()
    return password
