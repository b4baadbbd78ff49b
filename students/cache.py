"""Per-school versioned cache keys.

Every cached figure of a school lives under a key that embeds the school's current cache
versions. A write that changes school data bumps them after its transaction commits, so
readers move to fresh keys at once and stale entries simply expire. Redis being down reads
as a miss (django-redis IGNORE_EXCEPTIONS), so the page is computed, never a 500.

A school has one version per *topic* of its data: a cached figure names the topics it is
built from, and a write bumps the topics it changed. Taking attendance (every class, every
morning) then leaves the class rosters cached, which print no attendance; a write that does
not say what it changed bumps every topic.

A student's own pages (the profile, report cards) are cached per student as well: they
print that child's attendance and grades, not the school's. A write of attendance or grades
that names its students (a class's register, an assessment's marks) moves on only those
students' versions of that topic and the school's aggregate version (the dashboard); a write
that does not name them also moves the school's per-student version of the topic, which every
student's entry embeds, so nothing printed about any child can outlive it. A student's entry
built without attendance (the profile's grades part) stays cached through a register.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import connection, transaction

T = TypeVar("T")
_VERSION_TTL = 30 * 24 * 60 * 60
_LOCK_TTL = 30  # seconds: longer than any figure takes to compute, so a crashed holder frees it


# What a school's cached figures are built from.
RECORDS = "records"  # students, guardians, enrolments, classes, staff, terms: everything else
ATTENDANCE = "attendance"
GRADES = "grades"
TOPICS = (RECORDS, ATTENDANCE, GRADES)
# Topics whose writes can name the students they touched (see the module's docstring).
PER_STUDENT = (ATTENDANCE, GRADES)


def _version_key(school_id: int, topic: str) -> str:
    return f"school:{school_id}:{topic}:version"


def _every_student_key(school_id: int, topic: str) -> str:
    """The school's version of `topic` that every per-student entry embeds: it moves only on
    a write that does not say which students it changed."""
    return f"school:{school_id}:{topic}:every-student:version"


def _student_key(student_id: int, topic: str) -> str:
    return f"student:{student_id}:{topic}:version"


def _topic_keys(school_id: int, topics: tuple[str, ...], student_id: int | None) -> list[str]:
    """The version counters an entry built from `topics` embeds: the school's, or for one
    student's entry, that student's own and the school's every-student ones for attendance
    and grades."""
    keys: list[str] = []
    for topic in topics:
        if student_id is not None and topic in PER_STUDENT:
            keys += [_every_student_key(school_id, topic), _student_key(student_id, topic)]
        else:
            keys.append(_version_key(school_id, topic))
    return keys


def cache_version(key: str) -> int:
    """The current value of the version counter `key`, started if missing."""
    version = cache.get(key)
    if version is None:
        # A new or evicted counter starts from the clock, never from 1, so it cannot fall
        # back onto a number whose old entries are still cached.
        version = time.time_ns()
        if not cache.add(key, version, _VERSION_TTL):
            # Another process started the counter first: use theirs, or the two would cache
            # (and compute) the same figures under two keys.
            version = cache.get(key) or version
    return int(version)


def cache_version_bump(key: str) -> None:
    """Move the counter `key` on now: every entry cached under its old value is unreachable."""
    try:
        cache.incr(key)
    except ValueError:  # the counter is missing: start a fresh one
        cache.set(key, time.time_ns(), _VERSION_TTL)


def _version_values(keys: list[str]) -> dict[str, str]:
    """The current values of the counters `keys` (one round trip; a missing one is started)."""
    found = cache.get_many(keys)
    return {key: str(found.get(key) or cache_version(key)) for key in keys}


def _versions(keys: list[str]) -> str:
    """The current values of the counters `keys`, as one key fragment (one round trip)."""
    return ".".join(_version_values(keys).values())


def _school_key(school_id: int, versions: str, name: str) -> str:
    return f"school:{school_id}:v{versions}:{name}"


def school_cache_versions(school_id: int, topics: tuple[str, ...] = TOPICS) -> str:
    """The school's current versions of `topics`, as one key fragment (one round trip)."""
    return _versions(_topic_keys(school_id, topics, None))


def school_cache_bump(school_id: int, *topics: str, students: Iterable[int] | None = None) -> None:
    """Invalidate the school's cached figures built from `topics` (all of them when none is
    named) once the current transaction commits.

    `students`: the ids of the only students whose attendance or grades the write changed.
    Their own cached pages move on and other children's stay; without it, every student's
    cached pages of the school move on."""
    unknown = set(topics) - set(TOPICS)
    if unknown:
        raise ValueError(f"unknown cache topics: {sorted(unknown)}")
    topics = topics or TOPICS
    if students is not None and not set(topics) <= set(PER_STUDENT):
        raise ValueError("only attendance and grades writes can name their students")
    keys = [_version_key(school_id, topic) for topic in topics]
    student_keys: list[str] = []
    if students is None:
        keys += [_every_student_key(school_id, t) for t in topics if t in PER_STUDENT]
    else:
        student_keys = [_student_key(pk, t) for pk in sorted(set(students)) for t in topics]

    def bump() -> None:
        for key in keys:
            cache_version_bump(key)
        if student_keys:
            # Fresh values, not increments: one round trip for a whole class. A value only
            # has to differ from the one before; the clock's nanoseconds always do.
            now = time.time_ns()
            cache.set_many({key: now + i for i, key in enumerate(student_keys)}, _VERSION_TTL)

    transaction.on_commit(bump)


def _cached(key: str, compute: Callable[[], T], timeout: int) -> T:
    """`compute()` cached under `key`, with stampede protection (see `school_cached`)."""
    value = cache.get(key)
    if value is not None:
        return value
    lock_key = f"{key}:lock"
    # `add` answers None (not False) when Redis is down: then nobody holds a lock to wait for.
    if cache.add(lock_key, 1, _LOCK_TTL) is False:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            value = cache.get(key)
            if value is not None:
                return value
    try:
        value = compute()
        cache.set(key, value, timeout)
    finally:
        cache.delete(lock_key)
    return value


def school_cached(
    school_id: int,
    name: str,
    compute: Callable[[], T],
    timeout: int,
    *,
    topics: tuple[str, ...] = TOPICS,
) -> T:
    """The value of `compute()` cached under the school's current versions of `topics`, the
    data it is built from.

    Stampede protection: on a miss only the process that wins `cache.add` on a short lock
    computes; the others wait briefly for its result and compute themselves only if it does
    not come (so a slow or dead holder never blocks a page).
    """
    return _cached(
        _school_key(school_id, school_cache_versions(school_id, topics), name), compute, timeout
    )


def school_cached_parts(
    school_id: int, parts: list[tuple[str, Callable[[], Any], tuple[str, ...]]], timeout: int
) -> list[Any]:
    """Several of the school's cached values at once, each `(name, compute, topics)` as for
    `school_cached`: two round trips in all when every part is cached (the versions of every
    topic, then every part), not two per part. A missing part is computed as in
    `school_cached`, stampede lock included."""
    return _cached_parts(school_id, None, parts, timeout)


def _cached_parts(
    school_id: int,
    student_id: int | None,
    parts: list[tuple[str, Callable[[], Any], tuple[str, ...]]],
    timeout: int,
) -> list[Any]:
    part_keys = [_topic_keys(school_id, topics, student_id) for _name, _compute, topics in parts]
    values = _version_values(list(dict.fromkeys(k for keys in part_keys for k in keys)))
    prefix = "" if student_id is None else f"student:{student_id}:"
    keys = [
        _school_key(school_id, ".".join(values[k] for k in version_keys), f"{prefix}{name}")
        for version_keys, (name, _compute, _topics) in zip(part_keys, parts, strict=True)
    ]
    hits = cache.get_many(keys)
    return [
        hits[key] if hits.get(key) is not None else _cached(key, compute, timeout)
        for key, (_name, compute, _topics) in zip(keys, parts, strict=True)
    ]


def student_cached(
    school_id: int,
    student_id: int,
    name: str,
    compute: Callable[[], T],
    timeout: int,
    *,
    topics: tuple[str, ...] = TOPICS,
) -> T:
    """`compute()`, built from one student's data of `topics` in the school, cached under
    that student's versions and the school's versions that every student's entry embeds: a
    register or a set of marks taken for other children leaves it cached, and so does a
    register taken for this child when `topics` leaves out attendance.

    Records (names, enrolment, terms, staff) stay school-wide: any such write moves it on."""
    versions = _versions(_topic_keys(school_id, topics, student_id))
    return _cached(
        _school_key(school_id, versions, f"student:{student_id}:{name}"), compute, timeout
    )


def student_cached_parts(
    school_id: int,
    student_id: int,
    parts: list[tuple[str, Callable[[], Any], tuple[str, ...]]],
    timeout: int,
) -> list[Any]:
    """Several of one student's cached values, each `(name, compute, topics)` as for
    `student_cached`, in two round trips when all are cached: a page whose parts are built
    from different topics recomputes only the parts a write changed."""
    return _cached_parts(school_id, student_id, parts, timeout)


# --- signal receivers --------------------------------------------------------------------------
# Who teaches which class, and who is enrolled in it, decide what a teacher may see, and that
# is cached (students.tenancy). The services bump the school on every such write; these
# receivers make any other ORM write do it too (a shell, a data fix, a future code path), so
# the access-control cache never depends on a writer remembering to. Until the bump runs (at
# commit), the writing connection reads a teacher's students past the cache.
_TEACHING_DIRTY = "_schoolhouse_teaching_dirty"  # attribute on the thread's database connection


def teaching_cache_bypass() -> bool:
    """True while this connection's open transaction has changed enrolments or class
    teachers and their bump has not run yet."""
    if not getattr(connection, _TEACHING_DIRTY, False):
        return False
    if connection.in_atomic_block:
        return True
    setattr(connection, _TEACHING_DIRTY, False)  # that transaction has ended
    return False


def _teaching_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not instance.school_id:
        return
    if connection.in_atomic_block:
        setattr(connection, _TEACHING_DIRTY, True)
    school_cache_bump(instance.school_id, RECORDS)
    # The bump has run (at commit, or when a test runs the commit callbacks): read through
    # the cache again.
    transaction.on_commit(lambda: setattr(connection, _TEACHING_DIRTY, False))


def school_cache_receivers_connect() -> None:
    from django.db.models.signals import post_delete, post_save

    from .models import Enrollment, SectionTeacher

    for model in (Enrollment, SectionTeacher):
        for signal in (post_save, post_delete):
            signal.connect(
                _teaching_changed, sender=model, dispatch_uid=f"school_cache.{model.__name__}"
            )
