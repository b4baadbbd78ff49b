"""API tokens in the admin console: create one (its secret is shown once, on the page that
follows), see when each was last used, and revoke with a confirmation step. A school
administrator sees and manages only the tokens of their school."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from students.models import School, StaffMember

from .models import ApiToken
from .services import api_token_create, api_token_revoke, token_holder_allowed


def _school_ids(request: HttpRequest) -> list[int] | None:
    """Schools whose tokens the user manages; None means every school."""
    access = getattr(request, "access", None)
    if not access:
        return []
    if access.is_district_admin:
        return None
    return [access.school.pk]


@admin.action(description="Revoke selected tokens", permissions=["change"])
def revoke_tokens(
    modeladmin: ApiTokenAdmin, request: HttpRequest, queryset: QuerySet[ApiToken]
) -> HttpResponse | None:
    tokens = list(queryset.filter(revoked_at__isnull=True).select_related("user", "school"))
    if request.POST.get("confirmed") != "yes":
        return TemplateResponse(
            request,
            "api/token_revoke_confirm.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": "Revoke API tokens?",
                "tokens": tokens,
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "opts": modeladmin.model._meta,
            },
        )
    for token in tokens:
        api_token_revoke(token=token, actor=request.user)
    modeladmin.message_user(request, f"{len(tokens)} token(s) revoked.", messages.SUCCESS)
    return None


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "school", "name", "scope", "expires_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        user, school = data.get("user"), data.get("school")
        if self.instance.pk is None and user and school:
            # The service checks the same; here it becomes a form error, not a 500.
            if not token_holder_allowed(user=user, school=school):
                self.add_error("user", f"{user.get_username()} has no role at {school}.")
            expires_at = data.get("expires_at")
            if expires_at is not None and expires_at <= timezone.now():
                self.add_error("expires_at", "The expiry date is in the past.")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = [
        "name",
        "prefix",
        "user",
        "school",
        "scope",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username"]
    actions = [revoke_tokens]
    fields = ["user", "school", "name", "scope", "expires_at"]
    list_select_related = ["user", "school"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        qs = super().get_queryset(request)
        ids = _school_ids(request)
        return qs if ids is None else qs.filter(school_id__in=ids)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A token's holder, school and powers never change: revoke it and issue another.
        if obj is not None:
            return [
                "user",
                "school",
                "scope",
                "expires_at",
                "prefix",
                "created_by",
                "created_at",
                "last_used_at",
                "revoked_at",
                "revoked_by",
            ]
        return []

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return ["name", *self.get_readonly_fields(request, obj)]
        return self.fields

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        ids = _school_ids(request)
        if db_field.name == "school":
            qs = School.objects.filter(is_active=True)
            kwargs["queryset"] = qs if ids is None else qs.filter(pk__in=ids)
        if db_field.name == "user" and ids is not None:
            kwargs["queryset"] = User.objects.filter(
                pk__in=StaffMember.objects.filter(school_id__in=ids, is_active=True).values(
                    "user_id"
                )
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked tokens stay, as the record of who could read what

    def save_model(
        self, request: HttpRequest, obj: ApiToken, form: ModelForm, change: bool
    ) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        token, raw = api_token_create(
            user=obj.user,
            school=obj.school,
            name=obj.name,
            scope=obj.scope,
            expires_at=obj.expires_at,
            actor=request.user,
        )
        obj.pk = token.pk
        obj.prefix = token.prefix
        request._api_token_raw = raw  # type: ignore[attr-defined]  # shown once, never stored

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: Any = None
    ) -> HttpResponse:
        raw = getattr(request, "_api_token_raw", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "api/token_created.html",
            {
                **self.admin_site.each_context(request),
                "title": "API token created",
                "token": obj,
                "raw": raw,
                "opts": self.model._meta,
            },
        )
        # The page holds a secret: no cache, no referrer to any link followed from it.
        response["Cache-Control"] = "no-store"
        return response
