"""Year-end rollover from the command line."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from students.models import AcademicYear, School, Student
from students.rollover import OUTCOMES, rollover_apply, rollover_plan
from students.row_security import acting_for


def _date(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


class Command(BaseCommand):
    help = (
        "Close a school's academic year and open the next: create the new year and its terms "
        "(the old year's pattern a year later), copy classes and teachers (--copy-sections), "
        "move every enrolled student up a grade (the top grade graduates and becomes alumni), "
        "with exceptions by student number. Prints the plan; --dry-run stops there, otherwise "
        "everything is applied in one transaction."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--school", required=True, help="School code (see the admin).")
        parser.add_argument("--name", required=True, help="The new year's name, e.g. 2027-2028.")
        parser.add_argument("--from-year", help="The year to close (default: the current one).")
        parser.add_argument(
            "--starts",
            type=_date,
            help="First day, YYYY-MM-DD (default: a year after the old year's first day).",
        )
        parser.add_argument("--ends", type=_date, help="Last day, YYYY-MM-DD.")
        parser.add_argument(
            "--copy-sections",
            action="store_true",
            help="Create the same classes, with their teachers, in the new year "
            "and enrol the promoted students in them.",
        )
        for outcome in ("retain", "graduate", "withdraw"):
            parser.add_argument(
                f"--{outcome}",
                default="",
                metavar="NUMBERS",
                help=f"Comma-separated student numbers to {outcome}.",
            )
        parser.add_argument("--dry-run", action="store_true", help="Show the plan, change nothing.")
        parser.add_argument(
            "--no-make-current",
            action="store_true",
            help="Create the new year without making it the current one.",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        school = School.objects.filter(code=opts["school"]).first()
        if school is None:
            raise CommandError(f"No school with code {opts['school']!r}.")
        # Row-level security: the command works in that school's records alone.
        with acting_for([school.pk]):
            self._rollover(school, opts)

    def _rollover(self, school: School, opts: dict[str, Any]) -> None:
        years = AcademicYear.objects.for_school(school)
        old = (
            years.filter(name=opts["from_year"]).first()
            if opts["from_year"]
            else years.filter(is_current=True).first()
        )
        if old is None:
            raise CommandError("No such academic year to close (is one marked current?).")
        exceptions: dict[int, str] = {}
        for option, outcome in (
            ("retain", "retained"),
            ("graduate", "graduated"),
            ("withdraw", "withdrawn"),
        ):
            numbers = [n.strip() for n in opts[option].split(",") if n.strip()]
            found = dict(
                Student.objects.for_school(school)
                .filter(student_number__in=numbers)
                .values_list("student_number", "pk")
            )
            missing = set(numbers) - set(found)
            if missing:
                raise CommandError(f"No student(s) {', '.join(sorted(missing))} at {school}.")
            exceptions.update({pk: outcome for pk in found.values()})
        try:
            plan = rollover_plan(
                school=school,
                from_year=old,
                name=opts["name"],
                starts_on=opts["starts"],
                ends_on=opts["ends"],
                copy_sections=opts["copy_sections"],
                exceptions=exceptions,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(
            f"{school}: {old.name} → {plan.name} "
            f"({plan.starts_on} to {plan.ends_on}), {len(plan.terms)} terms, "
            f"{len(plan.sections)} classes copied"
        )
        for outcome in OUTCOMES:
            self.stdout.write(f"  {outcome:<10} {plan.counts[outcome]:>6}")
        if opts["verbosity"] > 1:
            for c in plan.changes:
                self.stdout.write(
                    f"    {c.student_number:<12} {c.name:<30} {c.outcome:<10} "
                    f"{c.from_level} {c.from_section} → {c.to_level} {c.to_section}"
                )
        if opts["dry_run"]:
            self.stdout.write(self.style.WARNING("Dry run: nothing was changed."))
            return
        try:
            year = rollover_apply(plan=plan, actor=None, make_current=not opts["no_make_current"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(self.style.SUCCESS(f"Rolled over: {year.name} is ready."))
