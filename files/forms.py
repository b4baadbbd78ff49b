from __future__ import annotations

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from .models import Document


def _file_help() -> str:
    return (
        f"PDF, images or Word files up to {filesizeformat(settings.DOCUMENTS_MAX_UPLOAD_BYTES)},"
        " depending on the category."
    )


class DocumentUploadForm(forms.Form):
    title = forms.CharField(
        max_length=200, required=False, help_text="Leave empty to use the file's name."
    )
    category = forms.ChoiceField(choices=Document.Category.choices)
    sensitive = forms.BooleanField(
        required=False,
        help_text="Medical, identity, special-education and custody records always are.",
    )
    file = forms.FileField()
    comment = forms.CharField(max_length=500, required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["file"].help_text = _file_help()


class VersionUploadForm(forms.Form):
    file = forms.FileField()
    comment = forms.CharField(
        max_length=500, required=False, help_text="What changed, for whoever reads the history."
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["file"].help_text = _file_help()
