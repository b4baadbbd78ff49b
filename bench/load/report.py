"""The load benchmark's Markdown: the tables of one run, and the "## Load" section of
BENCHMARKS.md (always the last section: everything from its heading on is rewritten)."""

from __future__ import annotations

import re
from typing import Any

from .services import REPO

BENCHMARKS = REPO / "BENCHMARKS.md"
HEADING = "## Load"
NOTES_MARK = "<!-- load-notes -->"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _from_ramp(window: dict[str, Any]) -> str:
    if not window:
        return ""
    return (
        f" From the end of the ramp-up, warm-up included ({window['requests']} requests): "
        f"p95 {_ms(window['p95'])} ms, {window['errors']} errors."
    )


def load_markdown(s: dict[str, Any]) -> str:
    m = s["machine"]
    total = next(r for r in s["scenario"] if r["name"] == "Aggregated")
    lines = [
        f"Run of {s['started']} (`python -m bench load`, raw CSVs in `{s['results_dir']}/`). "
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['ram_gb']} GB RAM; load average "
        f"{m['load']} (1/5/15 min) at start, {s['load_at_scenario_start']} when the scenario "
        f"began, {s['load_at_end']} at the end. Gunicorn: {s['gunicorn']['workers']} "
        f"{s['gunicorn']['worker_class']} workers x {s['gunicorn']['threads']} threads; "
        "locust (one process) on the same two cores.",
        "",
        f"**Staff scenario**: {s['users']} users, think time 2-10 s, {s['duration']} measured "
        f"after the ramp-up and {s.get('warmup', 0):.0f} s of warm-up: "
        f"**{total['rps']:.1f} requests/s, p95 {_ms(total['p95'])} ms, "
        f"{total['failures']} errors**." + _from_ramp(s.get("from_ramp") or {}),
        "",
        "| route | requests | req/s | p50 ms | p95 ms | p99 ms | errors | DB queries/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(s["scenario"], key=lambda r: (r["name"] == "Aggregated", r["name"])):
        name = "**all**" if r["name"] == "Aggregated" else f"{r['method']} {r['name']}"
        queries = r.get("queries")
        lines.append(
            f"| {name} | {r['requests']} | {r['rps']:.1f} | {_ms(r['p50'])} | {_ms(r['p95'])} "
            f"| {_ms(r['p99'])} | {r['failures']} | "
            f"{'-' if queries is None else queries} |"
        )
    lines += [
        "",
        "**Cache on / off, side by side** (same requests, same order, alternating between a "
        "server with the Redis cache and one with `CACHE_BACKEND=dummy`; medians, first cold "
        "round excluded; queries are means per request, the cold round included):",
        "",
        "| page | cached ms | uncached ms | speed-up | queries cached | queries uncached |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in s["compare"]:
        lines.append(
            f"| {r['page']} | {r['cached_ms']} | {r['uncached_ms']} | {r['speedup']}x "
            f"| {r['cached_queries']} | {r['uncached_queries']} |"
        )
    if s["saturation"]:
        crossing = s["saturation_rps"]
        lines += [
            "",
            "**Saturation** (the same scenario with no think time, users stepped up; each "
            "step measured separately):"
            + (
                f" p95 crosses 500 ms at about **{crossing} requests/s**."
                if crossing is not None
                else " p95 stayed under 500 ms at every step."
            ),
            "",
            "| users | req/s | p50 ms | p95 ms | errors | load (1 min) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in s["saturation"]:
            lines.append(
                f"| {r['users']} | {r['rps']} | {_ms(r['p50'])} | {_ms(r['p95'])} "
                f"| {r['failures']} | {r['load']} |"
            )
    return "\n".join(lines) + "\n"


def _split() -> tuple[str, str, str]:
    """BENCHMARKS.md as (before "## Load", the section, any section after it)."""
    text = BENCHMARKS.read_text()
    head, sep, rest = text.partition(f"\n{HEADING}\n")
    if not sep:
        return text, "", ""
    match = re.search(r"^## ", rest, re.M)
    if match is None:
        return head, rest, ""
    return head, rest[: match.start()], rest[match.start() :]


def _write(head: str, section: str, tail: str) -> None:
    text = head.rstrip("\n") + f"\n\n{HEADING}\n\n{section.strip()}\n"
    BENCHMARKS.write_text(text + (f"\n{tail}" if tail else ""))


def benchmarks_update(run_markdown: str) -> None:
    """Rewrite the "## Load" section with this run, keeping the hand-written notes that
    follow NOTES_MARK (and the soak result among them)."""
    head, section, tail = _split()
    notes = section[section.index(NOTES_MARK) :] if NOTES_MARK in section else NOTES_MARK
    _write(head, f"{run_markdown.strip()}\n\n{notes.strip()}", tail)


SOAK_MARK = "<!-- soak -->"


def soak_update(soak_markdown: str) -> None:
    """Put the soak result in the "## Load" section, between two SOAK_MARK lines after
    NOTES_MARK (replacing the previous soak's), so a later `bench load` run keeps it."""
    head, section, tail = _split()
    if NOTES_MARK not in section:
        section = f"{section.strip()}\n\n{NOTES_MARK}\n"
    block = f"{SOAK_MARK}\n{soak_markdown.strip()}\n{SOAK_MARK}"
    if section.count(SOAK_MARK) >= 2:
        start = section.index(SOAK_MARK)
        end = section.index(SOAK_MARK, start + 1) + len(SOAK_MARK)
        section = section[:start] + block + section[end:]
    else:
        section = f"{section.strip()}\n\n{block}\n"
    _write(head, section, tail)


def block_update(mark: str, heading: str, markdown: str) -> None:
    """Put `markdown` in the "## Load" section under `heading`, between two `mark` lines
    (replacing the previous run's; what follows the second mark is kept), after NOTES_MARK
    so that a later `bench load` run keeps it."""
    head, section, tail = _split()
    if NOTES_MARK not in section:
        section = f"{section.strip()}\n\n{NOTES_MARK}\n"
    block = f"{mark}\n{markdown.strip()}\n{mark}"
    if section.count(mark) >= 2:
        start = section.index(mark)
        end = section.index(mark, start + 1) + len(mark)
        section = section[:start] + block + section[end:]
    else:
        section = f"{section.strip()}\n\n{heading}\n\n{block}\n"
    _write(head, section, tail)
