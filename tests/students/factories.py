"""factory_boy factories for the school record. Related rows share one school by default."""

from __future__ import annotations

import datetime
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from students.models import (
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
from students.tenancy import DISTRICT_ADMIN_GROUP, ROLE_GROUPS

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password(PASSWORD)


class SchoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = School

    name = factory.Sequence(lambda n: f"School {n}")
    code = factory.Sequence(lambda n: f"s{n}")


class AcademicYearFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AcademicYear

    school = factory.SubFactory(SchoolFactory)
    name = "2026-2027"
    starts_on = datetime.date(2026, 8, 25)
    ends_on = datetime.date(2027, 6, 30)
    is_current = True


class TermFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Term

    academic_year = factory.SubFactory(AcademicYearFactory)
    school = factory.SelfAttribute("academic_year.school")
    name = factory.Sequence(lambda n: f"Term {n}")
    starts_on = datetime.date(2026, 8, 25)
    ends_on = datetime.date(2026, 12, 19)


class GradeLevelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GradeLevel

    school = factory.SubFactory(SchoolFactory)
    name = factory.Sequence(lambda n: f"Grade {n}")
    order = factory.Sequence(lambda n: n + 1)


class SubjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subject

    school = factory.SubFactory(SchoolFactory)
    code = factory.Sequence(lambda n: f"SUB{n}")
    name = factory.Sequence(lambda n: f"Subject {n}")


class SectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Section

    academic_year = factory.SubFactory(AcademicYearFactory)
    school = factory.SelfAttribute("academic_year.school")
    grade_level = factory.SubFactory(GradeLevelFactory, school=factory.SelfAttribute("..school"))
    name = factory.Sequence(lambda n: f"{n}A")


class StudentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Student

    school = factory.SubFactory(SchoolFactory)
    student_number = factory.Sequence(lambda n: f"ST-{n:05d}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    date_of_birth = datetime.date(2014, 5, 17)


class GuardianFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Guardian

    school = factory.SubFactory(SchoolFactory)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.Sequence(lambda n: f"guardian{n}@example.net")
    phone = "555-0100"


class StudentGuardianFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StudentGuardian

    student = factory.SubFactory(StudentFactory)
    school = factory.SelfAttribute("student.school")
    guardian = factory.SubFactory(GuardianFactory, school=factory.SelfAttribute("..school"))
    relationship = StudentGuardian.Relationship.MOTHER
    is_primary = True


class EnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Enrollment

    section = factory.SubFactory(SectionFactory)
    school = factory.SelfAttribute("section.school")
    academic_year = factory.SelfAttribute("section.academic_year")
    student = factory.SubFactory(StudentFactory, school=factory.SelfAttribute("..school"))
    started_on = factory.SelfAttribute("academic_year.starts_on")


class StaffMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StaffMember
        skip_postgeneration_save = True

    school = factory.SubFactory(SchoolFactory)
    user = factory.SubFactory(UserFactory)
    role = StaffMember.Role.SCHOOL_ADMIN

    @factory.post_generation
    def group(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            self.user.groups.add(Group.objects.get(name=ROLE_GROUPS[self.role]))
            if self.role == StaffMember.Role.SCHOOL_ADMIN:
                self.user.is_staff = True
                self.user.save(update_fields=["is_staff"])


class SectionTeacherFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SectionTeacher

    section = factory.SubFactory(SectionFactory)
    school = factory.SelfAttribute("section.school")
    staff = factory.SubFactory(
        StaffMemberFactory, school=factory.SelfAttribute("..school"), role=StaffMember.Role.TEACHER
    )


class AssessmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Assessment

    section = factory.SubFactory(SectionFactory)
    school = factory.SelfAttribute("section.school")
    subject = factory.SubFactory(SubjectFactory, school=factory.SelfAttribute("..school"))
    term = factory.SubFactory(
        TermFactory,
        academic_year=factory.SelfAttribute("..section.academic_year"),
        school=factory.SelfAttribute("..school"),
    )
    name = factory.Sequence(lambda n: f"Quiz {n}")
    max_score = Decimal("20")


class GradeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Grade

    assessment = factory.SubFactory(AssessmentFactory)
    school = factory.SelfAttribute("assessment.school")
    student = factory.SubFactory(StudentFactory, school=factory.SelfAttribute("..school"))
    score = Decimal("15")
    max_score = factory.SelfAttribute("assessment.max_score")


class AttendanceRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AttendanceRecord

    section = factory.SubFactory(SectionFactory)
    school = factory.SelfAttribute("section.school")
    student = factory.SubFactory(StudentFactory, school=factory.SelfAttribute("..school"))
    date = datetime.date(2026, 9, 1)
    status = AttendanceRecord.Status.PRESENT


def district_admin(username: str = "district") -> object:
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=DISTRICT_ADMIN_GROUP))
    return user
