"""Django's model permissions, and the session's user, read from the identity cache.

The navigation asks `perms` on every page, and `ModelBackend` answers with two queries (the
user's own permissions and their groups') on every request. The answer changes only when an
administrator changes the user's groups or a group's permissions, and students.identity
moves the cached answer on at exactly those writes.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from students.identity import identity_cached, identity_user_get


class CachedModelBackend(ModelBackend):
    def authenticate(self, request: Any, username: Any = None, password: Any = None, **kw: Any):  # type: ignore[no-untyped-def]
        user = super().authenticate(request, username=username, password=password, **kw)
        if user is None and username is not None and password is not None:
            # Wrong credentials end the sign-in here. Django's own ModelBackend stays listed
            # after this one only so that sessions signed in before it existed still load
            # (a session names the backend that signed it in); it must not hash the password
            # a second time on every failed attempt. Django still sends user_login_failed,
            # which django-axes counts.
            raise PermissionDenied
        return user

    def get_user(self, user_id: Any) -> Any:
        """The session's user from the identity cache (students.identity), not a query on
        every request; still refused when it may not sign in (inactive)."""
        user = identity_user_get(user_id, lambda: super(CachedModelBackend, self).get_user(user_id))
        return user if user is not None and self.user_can_authenticate(user) else None

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = identity_cached(
                user_obj,
                "model-perms",
                lambda: {
                    *self.get_user_permissions(user_obj),
                    *self.get_group_permissions(user_obj),
                },
            )
        return user_obj._perm_cache
