from __future__ import annotations

from typing import Any

from django import forms


class TrailFilterForm(forms.Form):
    """The auditor's filters; every one is optional and they combine."""

    actor = forms.CharField(
        required=False,
        max_length=150,
        label="Who",
        widget=forms.TextInput(attrs={"placeholder": "Username", "type": "search"}),
    )
    action = forms.CharField(
        required=False,
        max_length=50,
        label="Action",
        widget=forms.TextInput(attrs={"placeholder": "Action, e.g. view", "list": "audit-actions"}),
    )
    student = forms.CharField(
        required=False,
        max_length=40,
        label="Student number",
        widget=forms.TextInput(attrs={"placeholder": "Student number"}),
    )
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data
