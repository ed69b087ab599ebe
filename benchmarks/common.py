"""Helpers shared by the benchmarks: percentiles, container memory, process memory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


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
