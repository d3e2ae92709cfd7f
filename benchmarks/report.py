"""The machine, the table rows, and how they are printed and saved."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "latest.json"


@dataclass
class Row:
    """One line of the table: a figure, usually a ratio against a baseline from the same run."""

    section: str
    name: str
    figure: str  # as printed, e.g. "1.32x" or "4,812 B"
    value: float | None = None  # the number the target is checked against
    target: str = ""  # as printed, e.g. "≤ 1.5x"
    verdict: str = ""  # PASS / MISS / "" (no target)
    detail: str = ""  # absolute times and the baseline, for the curious
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers for the JSON only


def machine(postgres_version: str | None) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": postgres_version,
        "mcp": version("mcp"),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def header(info: dict[str, Any]) -> str:
    load = " ".join(f"{x:.1f}" for x in info["load_average_at_start"])
    return (
        f"task_mcp benchmarks on {info['cores']} cores ({info['cpu']}), Python {info['python']}, "
        f"SQLite {info['sqlite']}, PostgreSQL {info['postgres'] or 'not reachable'}, mcp {info['mcp']}; "
        f"load average at start {load}"
    )


def table(rows: list[Row]) -> str:
    widths = (
        max(len(r.name) for r in rows) + 2,
        max(len(r.figure) for r in rows),
        max(len(r.target) for r in rows),
    )
    lines, section = [], None
    for r in rows:
        if r.section != section:
            section = r.section
            lines.append(f"\n{section}")
        line = f"  {r.name:<{widths[0]}}{r.figure:>{widths[1]}}   {r.target:<{widths[2]}}  {r.verdict:<4}  {r.detail}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def save(info: dict[str, Any], rows: list[Row], notes: list[str], seconds: float) -> Path:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": info, "seconds": round(seconds, 1), "notes": notes, "rows": [asdict(r) for r in rows]}
    RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return RESULTS
