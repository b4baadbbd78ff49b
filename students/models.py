"""The school record: schools (the tenants) and everything a school owns.

Every school-owned model carries a `school` foreign key and a `SchoolOwnedQuerySet`, so one
call, `.for_school(school)`, scopes it in views, admin, exports and the API alike
(`students.tenancy` decides *which* school a request may see).
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class School(models.Model):
    """A school of the district: the tenant every other record belongs to."""

    name = models.CharField(max_length=200, unique=True)
    code = models.SlugField(
        max_length=20, unique=True, help_text="Short code used in student numbers and exports."
    )
    address = models.TextField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    email = models.EmailField(blank=True)
    principal_name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SchoolOwnedQuerySet(models.QuerySet):
    """The one scoping helper: every school-owned query passes through `for_school`."""

    def for_school(self, school: School | int) -> SchoolOwnedQuerySet:
        return self.filter(school=school)


class SchoolOwned(models.Model):
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")

    objects = SchoolOwnedQuerySet.as_manager()

    class Meta:
        abstract = True

    def _check_same_school(self, **related: SchoolOwned | None) -> None:
        """Refuse links across schools; a foreign key alone cannot express that."""
        errors = {
            name: f"This {name.replace('_', ' ')} belongs to another school."
            for name, obj in related.items()
            if obj is not None and obj.school_id != self.school_id
        }
        if errors:
            raise ValidationError(errors)


class AcademicYear(SchoolOwned):
    name = models.CharField(max_length=40, help_text="For example 2026-2027.")
    starts_on = models.DateField()
    ends_on = models.DateField()
    is_current = models.BooleanField(default=False)

    class Meta:
        ordering = ["-starts_on"]
        constraints = [
            models.UniqueConstraint(fields=["school", "name"], name="academicyear_unique_name"),
            models.UniqueConstraint(
                fields=["school"], condition=Q(is_current=True), name="academicyear_one_current"
            ),
            models.CheckConstraint(
                condition=Q(ends_on__gt=F("starts_on")), name="academicyear_ends_after_start"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Term(SchoolOwned):
    academic_year = models.ForeignKey(AcademicYear, on_delete=models.CASCADE, related_name="terms")
    name = models.CharField(max_length=40)
    starts_on = models.DateField()
    ends_on = models.DateField()

    class Meta:
        ordering = ["starts_on"]
        constraints = [
            models.UniqueConstraint(fields=["academic_year", "name"], name="term_unique_name"),
            models.CheckConstraint(
                condition=Q(ends_on__gt=F("starts_on")), name="term_ends_after_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.academic_year})"

    def clean(self) -> None:
        self._check_same_school(academic_year=getattr(self, "academic_year", None))
        year = getattr(self, "academic_year", None)
        if (
            year
            and self.starts_on
            and self.ends_on
            and (self.starts_on < year.starts_on or self.ends_on > year.ends_on)
        ):
            raise ValidationError("A term must lie within its academic year.")


class GradeLevel(SchoolOwned):
    name = models.CharField(max_length=40, help_text="For example Grade 7.")
    order = models.PositiveSmallIntegerField(help_text="Promotion goes to the next order.")

    class Meta:
        ordering = ["order"]
        constraints = [
            models.UniqueConstraint(fields=["school", "order"], name="gradelevel_unique_order"),
            models.UniqueConstraint(fields=["school", "name"], name="gradelevel_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Subject(SchoolOwned):
    code = models.CharField(max_length=20)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["school", "code"], name="subject_unique_code"),
        ]

    def __str__(self) -> str:
        return self.name


class StaffMember(SchoolOwned):
    """A user's place at a school. The role decides what they may see and do there."""

    class Role(models.TextChoices):
        SCHOOL_ADMIN = "school_admin", "School administrator"
        REGISTRAR = "registrar", "Registrar"
        TEACHER = "teacher", "Teacher"
        AUDITOR = "auditor", "Auditor (read-only)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    title = models.CharField(max_length=100, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Row-level security (students.row_security): a user's own memberships are read before
    # any school is chosen, to know which schools they may choose.
    row_security_read_also = (
        "user_id = nullif(current_setting('schoolhouse.user', true), '')::bigint"
    )

    class Meta:
        ordering = ["school__name", "user__last_name", "user__first_name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "school"], name="staffmember_one_per_school"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.user.get_full_name() or self.user.get_username()} ({self.get_role_display()})"
        )


class Section(SchoolOwned):
    """A class: a group of students taught together in one academic year."""

    academic_year = models.ForeignKey(
        AcademicYear, on_delete=models.PROTECT, related_name="sections"
    )
    grade_level = models.ForeignKey(GradeLevel, on_delete=models.PROTECT, related_name="sections")
    name = models.CharField(max_length=60, help_text="For example 7A.")
    room = models.CharField(max_length=40, blank=True)
    capacity = models.PositiveSmallIntegerField(default=30, validators=[MinValueValidator(1)])
    teachers = models.ManyToManyField(
        StaffMember, through="SectionTeacher", related_name="sections"
    )

    class Meta:
        ordering = ["grade_level__order", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["school", "academic_year", "name"], name="section_unique_name_per_year"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.academic_year})"

    def clean(self) -> None:
        self._check_same_school(
            academic_year=getattr(self, "academic_year", None),
            grade_level=getattr(self, "grade_level", None),
        )


class SectionTeacherQuerySet(SchoolOwnedQuerySet):
    def current(self, on: datetime.date | None = None) -> SectionTeacherQuerySet:
        """Assignments in force on `on` (today): the one definition of "teaches that day"
        behind a teacher's classes, pupils, registers, grade sheets and documents."""
        on = on or timezone.localdate()
        return self.filter(
            Q(starts_on__isnull=True) | Q(starts_on__lte=on),
            Q(ends_on__isnull=True) | Q(ends_on__gte=on),
        )


class SectionTeacher(SchoolOwned):
    """A teacher assigned to a section; a substitute is limited to a date range."""

    class Role(models.TextChoices):
        LEAD = "lead", "Lead teacher"
        CO_TEACHER = "co_teacher", "Co-teacher"
        SUBSTITUTE = "substitute", "Substitute"

    section = models.ForeignKey(Section, on_delete=models.CASCADE, related_name="teacher_links")
    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="section_links")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.LEAD)
    starts_on = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True)

    objects = SectionTeacherQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["section", "staff"], name="sectionteacher_unique"),
            models.CheckConstraint(
                condition=Q(ends_on__isnull=True)
                | Q(starts_on__isnull=True)
                | Q(ends_on__gte=F("starts_on")),
                name="sectionteacher_dates_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.staff} — {self.section} ({self.get_role_display()})"

    def clean(self) -> None:
        self._check_same_school(
            section=getattr(self, "section", None), staff=getattr(self, "staff", None)
        )


class StudentQuerySet(SchoolOwnedQuerySet):
    def active(self) -> StudentQuerySet:
        return self.filter(status=Student.Status.ACTIVE)

    def taught_by(self, staff: StaffMember, on: datetime.date | None = None) -> StudentQuerySet:
        """Students with an active enrollment in a section the staff member teaches on `on`."""
        current_links = SectionTeacher.objects.filter(staff=staff).current(on)
        # A semi-join (id IN ...), not a join: a join repeats a student per matching
        # enrolment and needs DISTINCT over every column, which also made the paginator's
        # COUNT evaluate every annotation of every row (24 ms a search page at load).
        return self.filter(
            pk__in=Enrollment.objects.filter(
                ended_on__isnull=True, section__in=current_links.values("section")
            ).values("student_id")
        )


class Student(SchoolOwned):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"
        GRADUATED = "graduated", "Graduated (alumni)"
        WITHDRAWN = "withdrawn", "Withdrawn"
        TRANSFERRED = "transferred", "Transferred out"

    student_number = models.CharField(
        max_length=30,
        validators=[RegexValidator(r"^[A-Za-z0-9-]+$", "Use letters, digits and dashes only.")],
    )
    first_name = models.CharField(max_length=100)
    middle_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100)
    preferred_name = models.CharField(max_length=100, blank=True)
    date_of_birth = models.DateField()
    gender = models.CharField(max_length=30, blank=True)
    grade_level = models.ForeignKey(
        GradeLevel, on_delete=models.PROTECT, null=True, blank=True, related_name="students"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    admitted_on = models.DateField(default=timezone.localdate)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    address = models.TextField(blank=True)
    medical_notes = models.TextField(blank=True, help_text="Allergies, conditions, medication.")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = StudentQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["school", "student_number"], name="student_unique_number_per_school"
            ),
            models.CheckConstraint(
                condition=Q(date_of_birth__gt=datetime.date(1900, 1, 1)),
                name="student_plausible_birth_date",
            ),
        ]
        indexes = [
            # The student list: one school, filtered by status and grade, ordered by name.
            models.Index(
                fields=["school", "status", "last_name", "first_name"], name="student_list_idx"
            ),
            models.Index(fields=["school", "grade_level", "status"], name="student_grade_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.full_name} ({self.student_number})"

    @property
    def full_name(self) -> str:
        first = self.preferred_name or self.first_name
        return f"{first} {self.last_name}"

    def clean(self) -> None:
        self._check_same_school(grade_level=getattr(self, "grade_level", None))
        if self.date_of_birth and self.date_of_birth > timezone.localdate():
            raise ValidationError({"date_of_birth": "The date of birth is in the future."})


class Guardian(SchoolOwned):
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    alternate_phone = models.CharField(max_length=40, blank=True)
    address = models.TextField(blank=True)
    preferred_language = models.CharField(max_length=40, blank=True)
    receives_absence_alerts = models.BooleanField(
        default=True, help_text="Untick to opt this guardian out of absence e-mails."
    )
    students = models.ManyToManyField(Student, through="StudentGuardian", related_name="guardians")

    class Meta:
        ordering = ["last_name", "first_name"]
        indexes = [
            models.Index(fields=["school", "last_name", "first_name"], name="guardian_name_idx")
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class StudentGuardian(SchoolOwned):
    class Relationship(models.TextChoices):
        MOTHER = "mother", "Mother"
        FATHER = "father", "Father"
        PARENT = "parent", "Parent"
        GRANDPARENT = "grandparent", "Grandparent"
        LEGAL_GUARDIAN = "guardian", "Legal guardian"
        FOSTER = "foster", "Foster parent"
        OTHER = "other", "Other"

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="guardian_links")
    guardian = models.ForeignKey(Guardian, on_delete=models.CASCADE, related_name="student_links")
    relationship = models.CharField(max_length=20, choices=Relationship.choices)
    is_primary = models.BooleanField("primary contact", default=False)
    can_pick_up = models.BooleanField("may pick up", default=True)
    lives_with_student = models.BooleanField(default=True)

    class Meta:
        ordering = ["-is_primary", "guardian__last_name"]
        constraints = [
            models.UniqueConstraint(fields=["student", "guardian"], name="studentguardian_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.guardian} — {self.get_relationship_display()} of {self.student}"

    def clean(self) -> None:
        self._check_same_school(
            student=getattr(self, "student", None), guardian=getattr(self, "guardian", None)
        )


class Enrollment(SchoolOwned):
    """A student's place in a section for an academic year; one open enrollment per year."""

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="enrollments")
    academic_year = models.ForeignKey(AcademicYear, on_delete=models.PROTECT, related_name="+")
    section = models.ForeignKey(Section, on_delete=models.PROTECT, related_name="enrollments")
    started_on = models.DateField(default=timezone.localdate)
    ended_on = models.DateField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_on"]
        constraints = [
            models.UniqueConstraint(
                fields=["student", "academic_year"],
                condition=Q(ended_on__isnull=True),
                name="enrollment_one_active_per_year",
            ),
            models.CheckConstraint(
                condition=Q(ended_on__isnull=True) | Q(ended_on__gte=F("started_on")),
                name="enrollment_ends_after_start",
            ),
        ]
        indexes = [
            # Roster of a section: its open enrollments.
            models.Index(fields=["section", "ended_on"], name="enrollment_roster_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.student} in {self.section}"

    def clean(self) -> None:
        self._check_same_school(
            student=getattr(self, "student", None), section=getattr(self, "section", None)
        )
        section = getattr(self, "section", None)
        if (
            section is not None
            and self.academic_year_id
            and (section.academic_year_id != self.academic_year_id)
        ):
            raise ValidationError({"section": "The section is in another academic year."})


class AttendanceRecord(SchoolOwned):
    class Status(models.TextChoices):
        PRESENT = "present", "Present"
        ABSENT = "absent", "Absent"
        LATE = "late", "Late"
        EXCUSED = "excused", "Excused absence"

    # The largest table (a row per student per school day). Its three foreign keys get no
    # index of their own: the composite indexes below lead with each of them, and the
    # single-column school index misled the planner into reading a whole school's year of
    # rows for the dashboard's week (19 ms instead of 2 ms on 1.3 million rows), besides
    # costing every insert three more index writes.
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+", db_index=False)
    student = models.ForeignKey(
        Student, on_delete=models.CASCADE, related_name="attendance", db_index=False
    )
    section = models.ForeignKey(
        Section, on_delete=models.PROTECT, related_name="attendance", db_index=False
    )
    date = models.DateField()
    period = models.PositiveSmallIntegerField(default=0, help_text="0 means the whole day.")
    status = models.CharField(max_length=10, choices=Status.choices)
    note = models.CharField(max_length=200, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date", "period"]
        constraints = [
            models.UniqueConstraint(
                fields=["student", "date", "period"], name="attendance_unique_student_date_period"
            ),
        ]
        indexes = [
            # Dashboard rates and the school's absence list: one school, a date range, a status.
            models.Index(fields=["school", "date", "status"], name="attendance_school_date_idx"),
            # Taking attendance and "missing attendance": one section, one date.
            models.Index(fields=["section", "date"], name="attendance_section_date_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.student} {self.date} p{self.period}: {self.get_status_display()}"


class Assessment(SchoolOwned):
    section = models.ForeignKey(Section, on_delete=models.CASCADE, related_name="assessments")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="assessments")
    term = models.ForeignKey(Term, on_delete=models.PROTECT, related_name="assessments")
    name = models.CharField(max_length=100)
    max_score = models.DecimalField(
        max_digits=6, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    weight = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    due_on = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["term__starts_on", "due_on", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(max_score__gt=0), name="assessment_max_positive"),
            models.CheckConstraint(condition=Q(weight__gte=0), name="assessment_weight_nonneg"),
        ]
        indexes = [models.Index(fields=["section", "term"], name="assessment_section_term_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.subject}, {self.section.name})"

    def clean(self) -> None:
        self._check_same_school(
            section=getattr(self, "section", None),
            subject=getattr(self, "subject", None),
            term=getattr(self, "term", None),
        )


class Grade(SchoolOwned):
    """A student's score on an assessment.

    `max_score` copies the assessment's maximum so the database itself can check
    0 <= score <= max (a CHECK constraint cannot look into another table); the
    `assessment_update` service keeps the copies in step.
    """

    assessment = models.ForeignKey(Assessment, on_delete=models.CASCADE, related_name="grades")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="grades")
    score = models.DecimalField(max_digits=6, decimal_places=2)
    max_score = models.DecimalField(max_digits=6, decimal_places=2, editable=False)
    comment = models.CharField(max_length=300, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["assessment", "student"], name="grade_unique"),
            models.CheckConstraint(
                condition=Q(score__gte=0) & Q(score__lte=F("max_score")),
                name="grade_score_within_max",
                violation_error_message="The score must be between 0 and the assessment's maximum.",
            ),
        ]
        indexes = [models.Index(fields=["student", "assessment"], name="grade_student_idx")]

    def __str__(self) -> str:
        return f"{self.student}: {self.score}/{self.max_score}"

    @property
    def percent(self) -> Decimal:
        return (self.score / self.max_score * 100).quantize(Decimal("0.1"))


class GradeLevelChange(SchoolOwned):
    """History of a student's grade level: promotions at rollover and mid-year moves."""

    class Reason(models.TextChoices):
        PROMOTED = "promoted", "Promoted at year end"
        RETAINED = "retained", "Retained at year end"
        MID_YEAR = "mid_year", "Mid-year change"
        GRADUATED = "graduated", "Graduated"

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="level_changes")
    from_level = models.ForeignKey(
        GradeLevel, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    to_level = models.ForeignKey(
        GradeLevel, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    changed_on = models.DateField()
    reason = models.CharField(max_length=20, choices=Reason.choices)
    note = models.CharField(max_length=200, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_on", "-id"]

    def __str__(self) -> str:
        return f"{self.student}: {self.from_level} → {self.to_level} ({self.changed_on})"


class StudentMove(SchoolOwned):
    """A student leaving (withdrawal, transfer out, graduation) or arriving by transfer.

    A transfer between two schools of the deployment creates the student's record at the
    receiving school, linked to the old one: the receiving school sees the full history from
    the transfer date on, the sending school keeps its record, read-only, for the period it
    owned.
    """

    class Kind(models.TextChoices):
        WITHDRAWAL = "withdrawal", "Withdrawal"
        TRANSFER = "transfer", "Transfer to another school"

    class ReasonCode(models.TextChoices):
        FAMILY_MOVED = "moved", "Family moved"
        OTHER_DISTRICT = "district", "Transfer to another district"
        PRIVATE_SCHOOL = "private", "Private or independent school"
        HOME_SCHOOLING = "home", "Home schooling"
        WITHIN_DISTRICT = "internal", "Transfer within the district"
        HEALTH = "health", "Health"
        EXPELLED = "expelled", "Expelled"
        OTHER = "other", "Other"

    student = models.ForeignKey(Student, on_delete=models.PROTECT, related_name="moves")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reason_code = models.CharField(max_length=20, choices=ReasonCode.choices)
    effective_on = models.DateField()
    to_school = models.ForeignKey(
        School, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    new_record = models.OneToOneField(
        Student, on_delete=models.PROTECT, null=True, blank=True, related_name="transferred_from"
    )
    note = models.CharField(max_length=300, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-effective_on", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="withdrawal", to_school__isnull=True)
                | Q(kind="transfer", to_school__isnull=False),
                name="studentmove_transfer_has_destination",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.student} {self.get_kind_display()} on {self.effective_on}"


class AbsenceAlertSettings(SchoolOwned):
    """The absence e-mail a school sends guardians; its school administrator edits it."""

    enabled = models.BooleanField(default=True)
    subject = models.CharField(
        max_length=200, default="{student_first_name} was absent from school on {date}"
    )
    body = models.TextField(
        default=(
            "Dear {guardian_name},\n\n"
            "{student_name} was marked absent from {section} on {date}, and we have no "
            "excuse on record.\n\nIf you know the reason, please call the school office at "
            "{school_phone} or reply to this e-mail.\n\nThank you,\n{school_name}"
        ),
        help_text=(
            "Placeholders: {guardian_name}, {student_name}, {student_first_name}, {date}, "
            "{section}, {school_name}, {school_phone}."
        ),
    )
    reply_to = models.EmailField(blank=True)

    class Meta:
        verbose_name = "absence alert settings"
        verbose_name_plural = "absence alert settings"
        constraints = [
            models.UniqueConstraint(fields=["school"], name="absencealertsettings_one_per_school")
        ]

    def __str__(self) -> str:
        return f"Absence alerts of {self.school_id}"

    def clean(self) -> None:
        from .absence_alerts import template_check

        errors = {}
        for name in ("subject", "body"):
            try:
                template_check(getattr(self, name))
            except ValidationError as exc:
                errors[name] = exc.messages
        if errors:
            raise ValidationError(errors)


class AbsenceAlert(SchoolOwned):
    """One e-mail to one guardian about one day's absence: the delivery log, and (through
    its unique constraint) the guarantee of at most one message per student per day."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="absence_alerts")
    guardian = models.ForeignKey(Guardian, on_delete=models.CASCADE, related_name="+")
    date = models.DateField()
    email = models.EmailField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-date", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["student", "guardian", "date"], name="absencealert_once_per_day"
            ),
        ]
        indexes = [models.Index(fields=["school", "date"], name="absencealert_school_date_idx")]

    def __str__(self) -> str:
        return f"{self.student} {self.date} → {self.email} ({self.status})"
