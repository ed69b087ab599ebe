"""Helpers shared by the benchmarks: percentiles, container memory, process memory, and the
operator dashboard's test data (shared with tests/billing/test_dashboard_scale.py)."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.courses import CourseEntry
    from hub.service.reports import DatedEntitlement
    from hub.store import Entitlement, Payment
    from hub.store.usage_models import ServerUsage


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _mib(amount: str) -> float:
    number = float(amount.rstrip("KMGiB"))
    unit = amount.lstrip("0123456789.")
    return number * {"B": 1 / 1024 / 1024, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]


def memory_mib(container_prefix: str) -> list[float]:
    """`docker stats --no-stream` memory of every running container named `container_prefix*`."""
    return list(memory_by_container(container_prefix).values())


def memory_by_container(*prefixes: str) -> dict[str, float]:
    """{container name: MiB} from one `docker stats --no-stream` call, for the given prefixes."""
    names = subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout.split()
    names = [n for n in names if n.startswith(prefixes)]
    if not names:
        return {}
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = {}
    for line in out.splitlines():
        name, usage = line.split(" ", 1)
        values[name] = _mib(usage.split("/")[0].strip())
    return values


def rss_mib(pid: int | None) -> float | None:
    """VmRSS of a process from /proc (None if it is gone)."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (0 if it is gone)."""
    if not pid:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid`."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg spells them."""
    return Path("/proc/loadavg").read_text().split()[:3]


def machine() -> dict[str, object]:
    """nproc, memory and load average of this machine, now."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "loadavg": loadavg(),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


def container_cpu_seconds(*prefixes: str) -> dict[str, float]:
    """{container name: CPU-seconds used since it started}, from the container's cgroup.

    Works with cgroup v1 (cgroupfs: cpuacct/docker/<id>/cpuacct.usage) and v2
    (docker/<id>/cpu.stat or system.slice/docker-<id>.scope/cpu.stat); missing ones are skipped.
    """
    out = subprocess.run(
        ["docker", "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = {}
    cg = Path("/sys/fs/cgroup")
    for line in out.splitlines():
        cid, name = line.split(" ", 1)
        if not name.startswith(prefixes):
            continue
        v1 = cg / "cpuacct" / "docker" / cid / "cpuacct.usage"
        v2 = [
            cg / "docker" / cid / "cpu.stat",
            cg / "system.slice" / f"docker-{cid}.scope/cpu.stat",
        ]
        try:
            if v1.exists():
                values[name] = int(v1.read_text()) / 1e9
                continue
            for path in v2:
                if path.exists():
                    for row in path.read_text().splitlines():
                        if row.startswith("usage_usec"):
                            values[name] = int(row.split()[1]) / 1e6
                    break
        except (OSError, ValueError):
            continue
    return values


def serve_at_root(settings: dict[str, Any]) -> None:
    """Drop the harness's hostile base URL (a test concern) from the bind and the public URL,
    so a benchmarked hub has the same shape of URL as the stock one it is compared with."""
    for key in ("bind_url", "public_url"):
        if key in settings["hub"]:
            settings["hub"][key] = settings["hub"][key].split("/@")[0] + "/"


# -- the operator dashboard's data, for its test and its benchmark --------------------------------


def course_entry(course_id: str, assignments: int = 0) -> CourseEntry:
    """A generated catalog entry priced 49.00, with assignments ``a1`` … ``a<assignments>``
    (no folder on disk: the dashboards read only its metadata)."""
    from hub.courses import Course, CourseEntry

    return CourseEntry(
        course=Course.model_validate(
            {
                "id": course_id,
                "title": course_id,
                "summary": "A generated course.",
                "price": {"amount": 4900},
                "assignments": [
                    {"id": f"a{i}", "title": f"A{i}"} for i in range(1, assignments + 1)
                ],
            }
        ),
        folder=Path("/nonexistent") / course_id,
    )


def dashboard_rows(
    first: int, count: int, course_ids: Sequence[str], now: datetime
) -> tuple[list[Entitlement], list[Payment], list[ServerUsage]]:
    """Rows of members ``first`` .. ``first + count - 1`` (``member00000`` ...): every kind of
    entitlement the operator dashboard's figures treat differently (revoked, past due in and out
    of grace, pending, plans ``all-access`` and ``data-only``, a withdrawn course, a second
    course and a repurchase), payments in two currencies with refunds, and server runs, over
    200 days before ``now``. The same ``first`` always gives the same rows."""
    from hub.store import Entitlement, Payment
    from hub.store.usage_models import ServerUsage

    rng = random.Random(first)
    ents: list[Entitlement] = []
    payments: list[Payment] = []
    runs: list[ServerUsage] = []
    for m in range(first, first + count):
        name = f"member{m:05d}"
        created = now - timedelta(days=rng.randint(0, 200), minutes=rng.randint(0, 1440))
        status, period_end, updated = "active", None, created
        if m % 7 == 0:
            status, updated = "revoked", created + timedelta(days=rng.randint(0, 60))
        elif m % 11 == 0:
            status, period_end = "past_due", now - timedelta(days=rng.choice([1, 10]))
        elif m % 17 == 0:
            status = "pending"
        course_id = course_ids[m % len(course_ids)] if m % 23 else "withdrawn-course"
        ents.append(
            Entitlement(
                username=name,
                course_id=course_id,
                source="purchase",
                status=status,
                period_end=period_end,
                created_at=created,
                updated_at=updated,
            )
        )
        if m % 5 == 0:  # a second course, sometimes the same one again (a repurchase)
            again = course_ids[(m // 5) % len(course_ids)]
            ents.append(
                Entitlement(
                    username=name,
                    course_id=again,
                    source="manual",
                    status="active",
                    created_at=created + timedelta(days=3),
                    updated_at=created + timedelta(days=3),
                )
            )
        if m % 13 == 0:
            ents.append(
                Entitlement(
                    username=name,
                    plan_id=rng.choice(["all-access", "data-only"]),
                    source="subscription",
                    status="active",
                    created_at=created,
                    updated_at=created,
                )
            )
        if m % 3 == 0:
            currency = "eur" if m % 2 else "usd"
            payments.append(
                Payment(
                    stripe_id=f"cs_{m}",
                    kind="checkout" if m % 13 else "invoice",
                    username=name,
                    course_id=course_id if m % 13 else None,
                    currency=currency,
                    amount=4900 + m,
                    amount_refunded=(4900 + m if m % 9 == 0 else 0),
                    paid_at=created,
                    updated_at=created,
                )
            )
        if m % 4 == 0:
            started = now - timedelta(hours=rng.randint(1, 100))
            seen = started + timedelta(minutes=rng.randint(0, 300))
            runs.append(
                ServerUsage(
                    username=name, course_id=course_id, started_at=started, last_seen_at=seen
                )
            )
    return ents, payments, runs


def enrolment_week_by_week(
    entitlements: Sequence[DatedEntitlement], course_ids: set[str], *, now: datetime
) -> list[tuple[str, int]]:
    """The enrolment chart's definition, week by week over every entitlement (what the
    dashboard computed before 8f4b9c2): the slow, obvious reference the faster ways must equal."""
    from hub.service.reports import week_start

    relevant = [
        e
        for e in entitlements
        if e.status != "pending" and (e.course_id in course_ids or e.plan_id is not None)
    ]
    if not relevant:
        return []
    week = week_start(min(e.created_at for e in relevant))
    series = []
    while week <= week_start(now):
        end = datetime.combine(week + timedelta(days=7), datetime.min.time(), tzinfo=UTC)
        users = {
            e.username
            for e in relevant
            if e.created_at < end and (e.status != "revoked" or e.updated_at >= end)
        }
        series.append((week.isoformat(), len(users)))
        week += timedelta(days=7)
    return series
