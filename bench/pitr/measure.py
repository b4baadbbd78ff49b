"""Wall time and memory of one command's process tree, sampled while it runs; and what the
rest of the machine did meanwhile.

The target is about *our* processes (the platform's Python: `manage.py ...` and its
streaming child), so the tree's processes are sorted into kinds: ours, pgBackRest,
PostgreSQL's client tools (pg_dump, pg_restore), and the PostgreSQL server a restore starts
(its postmaster stays a child of `pg_ctl` while WAL replays; its RSS is mostly shared
buffers and is reported apart, never as ours).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

MIB = 2**20
OURS = "ours"
PGBACKREST = "pgbackrest"
PG_TOOLS = "pg tools"
SERVER = "postgres server"
OTHER = "other"


class BenchFailed(RuntimeError):
    """A measured command exited non-zero; the message ends with its output."""


def kind_of(name: str, cmdline: list[str]) -> str:
    if name.startswith("python"):
        return OURS
    if name == "pgbackrest":
        return PGBACKREST
    if name in {"pg_dump", "pg_restore", "psql", "createdb"}:
        return PG_TOOLS
    if name in {"postgres", "postmaster"} or (cmdline and cmdline[0].startswith("postgres:")):
        return SERVER
    return OTHER


def label_of(name: str, cmdline: list[str]) -> str:
    """A short name: the executable, or for Python what it runs (`manage.py backup_now`)."""
    if not name.startswith("python"):
        return name
    args = cmdline[1:]
    if "-m" in args and args.index("-m") + 1 < len(args):
        return f"python -m {args[args.index('-m') + 1]}"
    for i, arg in enumerate(args):
        if arg.endswith("manage.py") and i + 1 < len(args):
            return f"manage.py {args[i + 1]}"
    return "python"


def vm_hwm(pid: int) -> int:
    """The process's own peak RSS so far (the kernel's high-water mark), so a spike between
    two samples is not missed."""
    with contextlib.suppress(OSError, ValueError):
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return 0


@dataclass
class Measured:
    step: str
    contender: str
    seconds: float
    started_at: str
    # User and system CPU of the command and its descendants (not of PostgreSQL's backends,
    # nor of a server it starts): what the work costs, which a busy machine blurs less.
    cpu_seconds: float = 0.0
    # The largest VmHWM of any one of our processes, and the largest sum of our processes'
    # RSS seen at one sample.
    ours_peak_mib: float = 0.0
    ours_sum_mib: float = 0.0
    # Per kind, the largest sum of RSS seen at one sample (pgBackRest's worker processes
    # together, pg_dump, ...).
    kinds_mib: dict[str, float] = field(default_factory=dict)
    processes: dict[str, float] = field(default_factory=dict)  # label -> its VmHWM, MiB
    load_start: float = 0.0
    load_end: float = 0.0
    output_bytes: int | None = None
    note: str = ""
    stdout_tail: str = ""
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds in, line)

    def at(self, prefix: str) -> float | None:
        """The second the first output line starting with `prefix` came."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    step: str,
    contender: str,
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    interval: float = 0.1,
    timeout: float = 4 * 3600,
) -> Measured:
    """Run `cmd` to its end, sampling its process tree every `interval` seconds."""
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]
    clock = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # Each line with the second it came at: the commands say what they are doing, and
    # those moments split a restore's wall time into its parts.
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for raw in stdout:
            lines.append((time.monotonic() - clock, raw.decode(errors="replace").rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    seen: dict[int, tuple[str, str]] = {}  # pid -> (label, kind), as last seen
    hwm: dict[int, int] = {}
    kinds: dict[str, int] = {}
    ours_sum = 0
    # WNOWAIT: notice the exit without reaping it, so that wait4 below gets the tree's
    # resource usage (CPU time of the command and every descendant it waited for).
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() - clock > timeout:
            proc.kill()
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        found: dict[int, tuple[str, list[str], int, int]] = {}
        for p in tree:
            try:
                with p.oneshot():
                    found[p.pid] = (p.name(), p.cmdline(), p.ppid(), p.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        now: dict[str, int] = {}
        for pid, (name, cmdline, ppid, rss) in found.items():
            parent = found.get(ppid)
            if parent is not None and parent[1] == cmdline:
                # Forked and not yet exec'd (subprocess's vfork): the parent's own pages,
                # counted once, with the parent.
                continue
            label, kind = label_of(name, cmdline), kind_of(name, cmdline)
            seen[pid] = (label, kind)
            now[kind] = now.get(kind, 0) + rss
            hwm[pid] = max(hwm.get(pid, 0), vm_hwm(pid), rss)
        for kind, total in now.items():
            kinds[kind] = max(kinds.get(kind, 0), total)
        ours_sum = max(ours_sum, now.get(OURS, 0))
        time.sleep(interval)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - clock
    reader.join(30)
    text = "\n".join(line for _at, line in lines)
    if proc.returncode != 0:
        raise BenchFailed(
            f"{step} / {contender}: {' '.join(cmd)} exited {proc.returncode}:\n{text[-4000:]}"
        )
    processes: dict[str, float] = {}
    for pid, peak in hwm.items():
        label, kind = seen[pid]
        if kind == SERVER:
            label = "postgres (restored server)"
        processes[label] = round(max(processes.get(label, 0.0), peak / MIB), 1)
    ours_peak = max(
        (peak for pid, peak in hwm.items() if seen[pid][1] == OURS),
        default=0,
    )
    return Measured(
        step=step,
        contender=contender,
        seconds=round(seconds, 2),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2),
        started_at=started_at,
        ours_peak_mib=round(ours_peak / MIB, 1),
        ours_sum_mib=round(ours_sum / MIB, 1),
        kinds_mib={k: round(v / MIB, 1) for k, v in sorted(kinds.items())},
        processes=dict(sorted(processes.items())),
        load_start=round(load_start, 2),
        load_end=round(os.getloadavg()[0], 2),
        stdout_tail=text[-3000:],
        lines=[(round(at, 2), line[:300]) for at, line in lines[:200]],
    )


# --- the rest of the machine -------------------------------------------------------------------
def _group(cmdline: list[str], name: str) -> str:
    """A stable name for another process: PostgreSQL backends by cluster, Python by what it
    runs (pytest and its workers), anything else by its command, shortened."""
    if cmdline and cmdline[0].startswith("postgres:"):
        return "postgres: " + cmdline[0].split(":")[1].strip() + " (backends and workers)"
    text = " ".join(cmdline) or name
    if "pytest" in text or "exec(eval(sys.stdin.readline()))" in text:
        return "pytest and its xdist workers"
    return text[:90]


class Neighbours:
    """Samples, every `interval` seconds, the 1-minute load average and the CPU time every
    process outside this benchmark used, so the report says what else ran and how hard.
    Processes of this run (descendants of this process, and every PostgreSQL server whose
    command line names `mine`, the run's directory, with its children) are left out."""

    def __init__(self, mine: Path, interval: float = 15.0) -> None:
        self.mine = str(mine)
        self.interval = interval
        self.loads: list[tuple[str, float]] = []
        self.cpu: dict[str, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._last_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Neighbours:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)

    def _ours(self) -> set[int]:
        ours = {os.getpid()}
        with contextlib.suppress(psutil.Error):
            ours |= {p.pid for p in psutil.Process().children(recursive=True)}
        for p in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if p.info["name"] == "postgres" and self.mine in " ".join(p.info["cmdline"] or []):
                    ours.add(p.pid)
                    ours |= {c.pid for c in p.children(recursive=True)}
        return ours

    def _sample(self) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
        self.loads.append((stamp, round(os.getloadavg()[0], 2)))
        ours = self._ours()
        current: dict[int, tuple[str, float]] = {}
        previous_at, self._last_at = self._last_at, time.time()
        for p in psutil.process_iter(["name", "cmdline", "cpu_times", "create_time"]):
            if p.pid in ours or p.info["cpu_times"] is None:
                continue
            times = p.info["cpu_times"]
            used = float(times.user + times.system)
            group = _group(p.info["cmdline"] or [], p.info["name"] or "?")
            current[p.pid] = (group, used)
            before = self._last.get(p.pid)
            # A process first seen now counts whole only if it started since the last
            # sample; an older one's earlier CPU is not this run's.
            if before:
                delta = used - before[1]
            else:
                delta = used if (p.info["create_time"] or 0) >= previous_at else 0.0
            if delta > 0:
                self.cpu[group] = self.cpu.get(group, 0.0) + delta
        self._last = current

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self._sample()

    def summary(self, top: int = 6) -> dict[str, Any]:
        loads = [value for _stamp, value in self.loads]
        busiest = sorted(self.cpu.items(), key=lambda item: -item[1])[:top]
        return {
            "load_min": min(loads, default=0.0),
            "load_mean": round(sum(loads) / len(loads), 2) if loads else 0.0,
            "load_max": max(loads, default=0.0),
            "loads": self.loads,
            "others_cpu_seconds": [[name, round(seconds)] for name, seconds in busiest],
        }


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
