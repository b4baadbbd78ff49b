import io
from django.db import connection
from django.test.utils import CaptureQueriesContext
from tests.students.test_csv_io import *  # noqa
import tests.students.test_csv_io as t
import pytest

pytestmark = [pytest.mark.django_db]


def test_show(world):
    school = t.school_with_students("ten", 10)
    with CaptureQueriesContext(connection) as q:
        student_csv_export(students=Student.objects.for_school(school), out=io.StringIO())
    for x in q.captured_queries:
        print("EXPORT", x["sql"][:150])
    existing = t.rows_of(t.export(school))
    data = t.make_csv(existing + [t.good_row("N-1")])
    with CaptureQueriesContext(connection) as q:
        plan = student_import_parse(school=school, data=data)
        student_import_apply(school=school, plan=plan, actor=None)
    for x in q.captured_queries:
        print("IMPORT", x["sql"][:150])
