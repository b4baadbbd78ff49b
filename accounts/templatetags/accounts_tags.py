from __future__ import annotations

import datetime

from django import template

register = template.Library()


@register.filter
def minutes(value: datetime.timedelta) -> str:
    """A lockout's length as people say it: "30 minutes", "2 hours"."""
    total = round(value.total_seconds() / 60)
    if total >= 120 and total % 60 == 0:
        return f"{total // 60} hours"
    return f"{total} minute{'s' if total != 1 else ''}"
