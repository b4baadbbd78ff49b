"""Forms of the staff pages. They parse and validate; the services do the writing."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.forms.utils import flatatt
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .models import AttendanceRecord, GradeLevel, School, Section, Student, StudentMove
from .selectors import AttendanceSheetRow, GradeSheetRow


class _ShortChoiceIterator(forms.models.ModelChoiceIterator):
    """Reads the choices with one plain query. Django's iterator() opens a server-side
    cursor on PostgreSQL (DECLARE, FETCH, CLOSE, and WITH HOLD outside a transaction) to
    read a dozen grade levels or classes on every page that shows the filter."""

    def __iter__(self) -> Any:
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for obj in self.queryset:
            yield self.choice(obj)


class PlainSelect(forms.Select):
    """A <select> built in Python. Django's Select renders a template per option (a
    school's 70 classes cost 20 ms a page under load); this writes the same markup at once.
    Nested choices (option groups) are left to Django's own rendering."""

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        # iter() first: list() asks a ModelChoiceIterator for its length, a COUNT query.
        choices = list(iter(self.choices))
        if any(isinstance(label, (list, tuple)) for _value, label in choices):
            return super().render(name, value, attrs, renderer)
        chosen = set(self.format_value(value))
        # Only the first match is selected, as Django's single select does.
        first = next((str(v) for v, _label in choices if str(v) in chosen), None)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (v, mark_safe(" selected") if str(v) == first else "", label)  # noqa: S308
                for v, label in choices
            ),
        )
        return format_html(
            '<select name="{}"{}>{}</select>',
            name,
            flatatt(self.build_attrs(self.attrs, attrs)),
            options,
        )


class ShortModelChoiceField(forms.ModelChoiceField):
    """A ModelChoiceField for short lists (a school's grades, classes, schools)."""

    iterator = _ShortChoiceIterator
    widget = PlainSelect


class StudentFilterForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Search",
        widget=forms.TextInput(
            attrs={
                "placeholder": "Name, student number or guardian",
                "type": "search",
                "autofocus": True,
            }
        ),
    )
    grade_level = ShortModelChoiceField(
        queryset=GradeLevel.objects.none(), required=False, empty_label="All grades"
    )
    section = ShortModelChoiceField(
        queryset=Section.objects.none(), required=False, empty_label="All classes"
    )
    status = forms.ChoiceField(
        choices=[("", "Any status"), *Student.Status.choices],
        required=False,
        initial="active",
        widget=PlainSelect,
    )

    def __init__(self, *args: Any, grade_levels: Any, sections: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["grade_level"]).queryset = grade_levels
        cast(forms.ModelChoiceField, self.fields["section"]).queryset = sections


class AttendanceDateForm(forms.Form):
    date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))

    def clean_date(self) -> datetime.date:
        date = self.cleaned_data["date"]
        if date > timezone.localdate():
            raise forms.ValidationError("Attendance cannot be taken for a future date.")
        return date


@dataclass(frozen=True)
class SheetLine:
    """One student's row of an attendance or grade sheet, ready to draw."""

    row: Any  # AttendanceSheetRow or GradeSheetRow
    name: str  # the status or score input
    value: str
    errors: list[str]
    text_name: str  # the note or comment input
    text_value: str
    text_errors: list[str]
    choices: SafeString = SafeString("")  # an attendance row's radio cells, written at once


def _radio_cells(name: str, value: str, choices: list[tuple[str, str]]) -> SafeString:
    """A row's radio buttons, one cell each: the markup (names, values, ids) of Django's
    RadioSelect for the same field, written in Python. Drawn by the template, a class's
    hundred buttons cost more than the rest of the page."""
    return format_html_join(
        "",
        '<td class="radio"><label><span class="sr-only">{}</span><input type="radio" '
        'name="{}" value="{}" required id="id_{}_{}"{}></label></td>',
        (
            (label, name, choice, name, i, mark_safe(" checked") if choice == value else "")  # noqa: S308
            for i, (choice, label) in enumerate(choices)
        ),
    )


def _sheet_line(form: forms.Form, row: Any, name: str, text_name: str) -> SheetLine:
    def shown(field: str) -> str:
        value = form[field].value()  # the posted value when bound, else the initial one
        return "" if value is None else str(value)

    return SheetLine(
        row=row,
        name=name,
        value=shown(name),
        errors=[str(e) for e in form.errors.get(name) or []] if form.is_bound else [],
        text_name=text_name,
        text_value=shown(text_name),
        text_errors=[str(e) for e in form.errors.get(text_name) or []] if form.is_bound else [],
    )


class AttendanceSheetForm(forms.Form):
    """One status and note per student of the roster."""

    def __init__(self, *args: Any, rows: list[AttendanceSheetRow], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows = rows
        for row in rows:
            pk = row.student.pk
            self.fields[f"status_{pk}"] = forms.ChoiceField(
                choices=AttendanceRecord.Status.choices,
                initial=row.status,
                widget=forms.RadioSelect,
                label=row.student.full_name,
            )
            self.fields[f"note_{pk}"] = forms.CharField(
                required=False,
                max_length=200,
                initial=row.note,
                label="Note",
            )

    def marks(self) -> dict[int, tuple[str, str]]:
        return {
            row.student.pk: (
                self.cleaned_data[f"status_{row.student.pk}"],
                self.cleaned_data[f"note_{row.student.pk}"],
            )
            for row in self.rows
        }

    def sheet(self) -> list[SheetLine]:
        """What the template needs to draw each row's inputs itself: a class's sheet has a
        hundred radio buttons, and Django renders each widget through its own template
        (half the page's time); names, values and ids stay those of the form's widgets."""
        lines = [
            _sheet_line(self, row, f"status_{row.student.pk}", f"note_{row.student.pk}")
            for row in self.rows
        ]
        choices = [(str(v), str(label)) for v, label in AttendanceRecord.Status.choices]
        return [
            replace(line, choices=_radio_cells(line.name, line.value, choices)) for line in lines
        ]


class GradeSheetForm(forms.Form):
    """One score (blank = not graded) and comment per student."""

    def __init__(
        self, *args: Any, rows: list[GradeSheetRow], max_score: Decimal, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rows = rows
        for row in rows:
            pk = row.student.pk
            self.fields[f"score_{pk}"] = forms.DecimalField(
                required=False,
                min_value=Decimal(0),
                max_value=max_score,
                decimal_places=2,
                max_digits=6,
                initial=row.score,
                label=row.student.full_name,
                widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
            )
            self.fields[f"comment_{pk}"] = forms.CharField(
                required=False,
                max_length=300,
                initial=row.comment,
                label="Comment",
            )

    def entries(self) -> tuple[dict[int, tuple[Decimal, str]], list[int]]:
        """Scores to record, and students whose score was cleared."""
        scores, cleared = {}, []
        for row in self.rows:
            pk = row.student.pk
            score = self.cleaned_data[f"score_{pk}"]
            if score is None:
                if row.score is not None:
                    cleared.append(pk)
            else:
                scores[pk] = (score, self.cleaned_data[f"comment_{pk}"])
        return scores, cleared

    def sheet(self) -> list[SheetLine]:
        """As AttendanceSheetForm.sheet: the template draws the inputs."""
        return [
            _sheet_line(self, row, f"score_{row.student.pk}", f"comment_{row.student.pk}")
            for row in self.rows
        ]


class StudentImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 CSV with the columns of the export.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )


class StudentMoveForm(forms.Form):
    kind = forms.ChoiceField(
        choices=StudentMove.Kind.choices,
        widget=forms.RadioSelect,
        initial=StudentMove.Kind.TRANSFER,
    )
    to_school = ShortModelChoiceField(
        queryset=School.objects.none(), required=False, label="Receiving school"
    )
    effective_on = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}), label="Last day / transfer date"
    )
    reason_code = forms.ChoiceField(choices=StudentMove.ReasonCode.choices, label="Reason")
    new_student_number = forms.CharField(
        required=False, max_length=30, help_text="Leave blank to keep the same number."
    )
    note = forms.CharField(required=False, max_length=300, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, schools: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["to_school"]).queryset = schools

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == StudentMove.Kind.TRANSFER and not data.get("to_school"):
            self.add_error("to_school", "Choose the school the student moves to.")
        return data


class RolloverForm(forms.Form):
    name = forms.CharField(max_length=40, label="New academic year", help_text="e.g. 2027-2028")
    starts_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    ends_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    copy_sections = forms.BooleanField(
        required=False, initial=True, label="Copy classes and their teachers"
    )
    exceptions = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One per line: student number, then retained, graduated or withdrawn. "
        "Everyone else moves up a grade; the top grade graduates.",
    )

    def parse_exceptions(self, school: School) -> dict[int, str]:
        """Student numbers to ids; every bad line is reported, none is guessed."""
        wanted: dict[str, str] = {}
        problems = []
        for n, line in enumerate(self.cleaned_data.get("exceptions", "").splitlines(), 1):
            parts = line.replace(",", " ").replace(":", " ").split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1].lower() not in {"retained", "graduated", "withdrawn"}:
                problems.append(f"line {n}: write a student number and an outcome")
                continue
            wanted[parts[0]] = parts[1].lower()
        found = dict(
            Student.objects.for_school(school)
            .filter(student_number__in=wanted)
            .values_list("student_number", "pk")
        )
        problems += [f"no student {number}" for number in wanted if number not in found]
        if problems:
            raise forms.ValidationError("; ".join(problems))
        return {found[number]: outcome for number, outcome in wanted.items()}
