"""Who a signed-in user is, cached: their schools and roles, and their permissions.

Every page needs these facts before it can show anything (the tenancy of `request.access`,
the navigation's `perms`), and they change only when an administrator changes a role. Read
from the database on every request they were most of what a cached page cost (five queries
against one for the session's user), so they live in the cache under two version counters:

- one per user, moved on by a change to that user (groups, direct permissions, active flag);
- one for everybody, moved on by a change that reaches many users at once: a staff
  membership, a school, a role group's permissions.

Invalidation follows every write path, the admin's many-to-many widgets included, so it hangs
off model signals rather than off services; `migrate` (permissions and role groups, written
without signals) and a restore of the live database move everything on too. A write that
sends no signal (`update()`, `bulk_create`) must call `identity_invalidate`. A change
bumps its counter when its transaction commits (so another process cannot re-cache the old
facts between the bump and the commit); until then, reads on the writing connection inside
that transaction bypass the cache, so a request, command or test that changes a role and then
asks about it sees the change at once, and a rollback leaves nothing wrong behind in the cache.
Entries also expire after IDENTITY_CACHE_TIMEOUT, which bounds what a bump lost to a Redis
outage could leave behind. Redis being down reads as a miss: the facts come from the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.db import connection, router, transaction
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save

from .cache import cache_version, cache_version_bump

T = TypeVar("T")
_EVERYONE = "identity:version"
_SHARED = "identity:all:facts"
_DIRTY = "_schoolhouse_identity_dirty"  # attribute on the thread's database connection
_LOOKUP = "_schoolhouse_identity"  # attribute on the request's user object


def _user_version_key(user_id: int) -> str:
    return f"identity:user:{user_id}:version"


def _user_facts_key(user_id: int) -> str:
    return f"identity:user:{user_id}:facts"


@dataclass
class _Facts:
    """One cache entry of facts, tagged with the versions they were read under."""

    key: str
    versions: tuple[int, ...]
    values: dict[str, Any] = field(default_factory=dict)

    def remember(self, name: str, value: Any) -> None:
        self.values[name] = value
        cache.set(self.key, (self.versions, self.values), settings.IDENTITY_CACHE_TIMEOUT)


@dataclass
class _Lookup:
    mine: _Facts
    shared: _Facts


def _lookup(user: Any) -> _Lookup:
    """Both version counters and both fact entries in one round trip to the cache, once per
    request (kept on the request's user object, as Django keeps its permission cache)."""
    found = getattr(user, _LOOKUP, None)
    if found is None:
        found = _lookup_read(user.pk)
        setattr(user, _LOOKUP, found)
    return found


def _lookup_read(user_id: int) -> _Lookup:
    version_key, facts_key = _user_version_key(user_id), _user_facts_key(user_id)
    got = cache.get_many([_EVERYONE, version_key, facts_key, _SHARED])
    everyone = int(got.get(_EVERYONE) or cache_version(_EVERYONE))
    mine = int(got.get(version_key) or cache_version(version_key))

    def current(key: str, versions: tuple[int, ...]) -> _Facts:
        # Facts tagged with other versions were read before a change: they are dropped.
        tagged = got.get(key)
        values = tagged[1] if tagged and tuple(tagged[0]) == versions else {}
        return _Facts(key=key, versions=versions, values=dict(values))

    return _Lookup(mine=current(facts_key, (everyone, mine)), shared=current(_SHARED, (everyone,)))


def _bypass() -> bool:
    """True while this connection's open transaction has changed identity rows."""
    if not getattr(connection, _DIRTY, False):
        return False
    if connection.in_atomic_block:
        return True
    setattr(connection, _DIRTY, False)  # that transaction has ended (committed or rolled back)
    return False


def identity_cached(user: Any, name: str, compute: Callable[[], T], *, shared: bool = False) -> T:
    """The fact `name` about `user` (or, `shared`, about roles and schools, the same for every
    user), computed on a miss. The versions are read before computing, so a change that
    commits meanwhile leaves a fact tagged with the old versions: the next request drops it."""
    if _bypass():
        return compute()
    lookup = _lookup(user)
    facts = lookup.shared if shared else lookup.mine
    if name in facts.values:
        return facts.values[name]  # type: ignore[no-any-return]
    value = compute()
    facts.remember(name, value)
    return value


def identity_user_get(user_id: int, load: Callable[[], Any]) -> Any:
    """The signed-in user's row for the session (the authentication backend's `get_user`),
    from the same cache entry as their other facts: one round trip on every request instead
    of a query, and the facts asked for later in the request need none.

    `load()` reads the row (None: no such user, or one who may not sign in; never cached).
    Any save of the user but a sign-in's `last_login` moves the entry on, so a new password,
    a deactivation or a new name shows on the next request; the cached `last_login` may be
    older than the database's. The entry keeps the row's column values only, so nothing a
    request attaches to its user object (permission caches, OTP device) is ever cached."""
    if _bypass():
        return load()
    model = get_user_model()
    columns = [f.attname for f in model._meta.concrete_fields]
    lookup = _lookup_read(user_id)
    row = lookup.mine.values.get("user-row")
    if row is None or len(row) != len(columns):  # none yet, or cached before a new column
        user = load()
        if user is None:
            return None
        lookup.mine.remember("user-row", [getattr(user, name) for name in columns])
    else:
        user = model.from_db(router.db_for_read(model), columns, row)
    setattr(user, _LOOKUP, lookup)
    return user


def identity_invalidate(user_ids: set[int] | None) -> None:
    """Invalidate the cached identity of `user_ids` (None: of everybody) when the current
    transaction commits; for writes that send no signals (bulk_create, update)."""
    if connection.in_atomic_block:
        setattr(connection, _DIRTY, True)
    keys = [_EVERYONE] if user_ids is None else [_user_version_key(pk) for pk in user_ids]

    def bump() -> None:
        for key in keys:
            cache_version_bump(key)

    transaction.on_commit(bump)


# --- signal receivers --------------------------------------------------------------------------


def _user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    # Signing in saves last_login only: nothing this module caches depends on it, and a
    # bump per sign-in would empty the cache for that user on every login.
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    identity_invalidate({instance.pk})


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    identity_invalidate({instance.pk})


def _user_links_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    if not action.startswith("post_"):
        return
    if not reverse:  # user.groups.add(...): one user changed
        identity_invalidate({instance.pk})
    elif pk_set:  # group.user_set.add(...): these users changed
        identity_invalidate(set(pk_set))
    else:  # group.user_set.clear(): we do not know whom it touched
        identity_invalidate(None)


def _everyone_changed(sender: Any, **kwargs: Any) -> None:
    action = kwargs.get("action")
    if action is not None and not action.startswith("post_"):
        return  # m2m_changed: act once, after the change
    identity_invalidate(None)


def identity_receivers_connect() -> None:
    from .models import School, StaffMember

    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="identity.user_saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="identity.user_deleted")
    for through in (user_model.groups.through, user_model.user_permissions.through):  # type: ignore[attr-defined]
        m2m_changed.connect(
            _user_links_changed, sender=through, dispatch_uid=f"identity.{through.__name__}"
        )
    # Changes that reach many users at once, and are rare: memberships (a user's schools and
    # role), schools (names, active flags: the school switcher of every user), role groups.
    for model in (StaffMember, School, Group, Permission):
        for signal in (post_save, post_delete):
            signal.connect(
                _everyone_changed, sender=model, dispatch_uid=f"identity.{model.__name__}"
            )
    m2m_changed.connect(
        _everyone_changed, sender=Group.permissions.through, dispatch_uid="identity.group_perms"
    )
    # `migrate` creates permissions and syncs the role groups through historical models and
    # bulk_create, which send none of the signals above: a release that changes what a role
    # may do moves everybody's identity on.
    post_migrate.connect(_everyone_changed, dispatch_uid="identity.migrate")
