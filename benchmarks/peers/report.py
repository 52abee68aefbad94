"""The peer benchmark's outputs: the text table, the JSON report, the PNG bar chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .systems import WORKLOADS

__all__ = ["format_table", "write_json", "write_png"]

#: The fields every summary row of a verified system has (the test checks them).
SUMMARY_FIELDS = (
    "seconds",
    "messages_per_second",
    "cpu_seconds",
    "process_cpu_seconds",
    "peak_rss_mb",
    "broker_cpu_seconds",
    "arrowflow_speedup",
)


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"peers: {cfg['messages']:,} messages, {cfg['partitions']} partitions, {cfg['rounds']} round(s), "
        f"checkpoint every {cfg['checkpoint_interval']} s; run started {report['started']}"
    ]
    head = (
        "system",
        "status",
        "job s",
        "msg/s",
        "af x",
        "cpu s",
        "proc cpu s",
        "rss MB",
        "broker cpu s",
        "db cpu s",
    )
    for workload in cfg["workloads"]:
        rows = [r for r in report["summary"] if r["workload"] == workload]
        body = []
        for r in rows:
            body.append(
                (
                    r["label"],
                    r["status"],
                    _num(r.get("seconds"), ".2f"),
                    _num(r.get("messages_per_second"), ",.0f"),
                    _num(r.get("arrowflow_speedup"), ".2f"),
                    _num(r.get("cpu_seconds"), ".1f"),
                    _num(r.get("process_cpu_seconds"), ".1f"),
                    _num(r.get("peak_rss_mb"), ".0f"),
                    _num(r.get("broker_cpu_seconds"), ".1f"),
                    _num(r.get("db_cpu_seconds"), ".1f"),
                )
            )
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        lines += ["", WORKLOADS[workload].title]
        lines.append(
            "  ".join(
                h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True))
            )
        )
        for b in body:
            lines.append(
                "  ".join(
                    c.ljust(w) if i < 2 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(b, widths, strict=True))
                )
            )
        for r in rows:
            if r["status"] != "ok" and r.get("error"):
                lines.append(f"  {r['system']}: {r['status']}: {r['error'][:400]}")
    lines.append("")
    lines.append(
        "job s: median of the job's own clock (start-up excluded); af x: arrowflow (at-least-once, p1) msg/s "
        "divided by the row's (> 1: arrowflow is faster); cpu s: the job's process CPU over its clock; proc "
        "cpu s: the whole process (rusage); rss MB: the job's peak RSS (VmHWM); broker/db cpu s: the "
        "servers' CPU over the run (db: PostgreSQL, or the OpenSearch node)."
    )
    for why in report.get("skipped_workloads", {}).values():
        lines.append(f"skipped: {why}")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


def write_png(report: dict[str, Any], path: Path) -> None:
    """One panel per workload: messages/s per system (a failed system says so), with peak RSS."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    workloads = report["config"]["workloads"]
    fig, axes = plt.subplots(
        len(workloads),
        1,
        figsize=(10, 2.2 + 0.45 * len(report["config"]["systems"]) * len(workloads)),
        squeeze=False,
    )
    try:
        for ax, workload in zip(axes[:, 0], workloads, strict=True):
            rows = [r for r in report["summary"] if r["workload"] == workload]
            labels = [r["label"] for r in rows]
            rates = [r.get("messages_per_second") or 0.0 for r in rows]
            colors = ["tab:orange" if r["system"].startswith("arrowflow") else "tab:blue" for r in rows]
            y = range(len(rows))
            ax.barh(list(y), rates, color=colors)
            ax.set_yticks(list(y), labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel("messages/s (median)")
            ax.set_title(WORKLOADS[workload].title, fontsize=10)
            top = max(rates) if any(rates) else 1.0
            for i, r in enumerate(rows):
                if r["status"] == "ok":
                    text = f"{rates[i]:,.0f}/s  rss {r.get('peak_rss_mb') or 0:.0f} MB"
                else:
                    text = r["status"]
                ax.text(rates[i] + top * 0.01, i, text, va="center", fontsize=7)
            ax.set_xlim(0, top * 1.35)
        cfg = report["config"]
        fig.suptitle(
            f"arrowflow vs peers: {cfg['messages']:,} messages, {cfg['partitions']} partitions "
            f"({report['started']}, {report['environment'].get('host', '')})",
            fontsize=10,
        )
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(str(path), format="png", dpi=110)
    finally:
        plt.close(fig)
