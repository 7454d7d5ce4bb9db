"""A simulation's figures as one self-contained HTML page with Plotly plots.

plotly.js is embedded once in the page (no CDN), so the report opens on an air-gapped machine and can be mailed
around as a single file.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

SOFTWARE = "#4c78a8"
HARDWARE = "#e45756"
OTHER = "#72b7b2"


def _figure(title: str, fig: go.Figure, height: int = 360) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def figures(results: dict[str, Any]) -> list[go.Figure]:
    daily = results.get("daily", [])
    days = [d["day"] + 1 for d in daily]
    out: list[go.Figure] = []

    fig = go.Figure()
    fig.add_scatter(x=days, y=[d["in_service_gpus"] for d in daily], mode="lines+markers", name="GPUs in service")
    fig.add_hline(y=results["gpus"], line_dash="dot", annotation_text=f"{results['gpus']:,} GPUs in the fleet")
    fig.update_xaxes(title="day")
    fig.update_yaxes(title="GPUs in service at the end of the day")
    out.append(_figure("Capacity in customers' hands", fig))

    fig = go.Figure()
    fig.add_bar(x=days, y=[d["failures_hardware"] for d in daily], name="hardware", marker_color=HARDWARE)
    fig.add_bar(x=days, y=[d["failures_software"] for d in daily], name="software", marker_color=SOFTWARE)
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="day")
    fig.update_yaxes(title="unexpected interruptions")
    out.append(_figure("Interruptions per day", fig))

    counts = results["interruptions"]
    calibration = results.get("calibration", {})
    total = results["interruptions_total"] or 1
    names = sorted(counts, key=lambda n: counts[n])
    fig = go.Figure()
    fig.add_bar(y=names, x=[counts[n] / total for n in names], orientation="h", name="simulated", marker_color=OTHER)
    source_counts = calibration.get("counts") or {}
    if source_counts:
        source_total = sum(source_counts.values()) or 1
        fig.add_bar(
            y=names,
            x=[source_counts.get(n, 0) / source_total for n in names],
            orientation="h",
            name="published",
            marker_color="#bab0ac",
        )
    fig.update_xaxes(title="share of interruptions", tickformat=".0%")
    out.append(_figure("Interruptions by component, against the calibration data", fig, 520))

    states = sorted({s for d in daily for s in d["nodes_by_state"] if s != "in_service"})
    fig = go.Figure()
    for state in states:
        fig.add_scatter(
            x=days, y=[d["nodes_by_state"].get(state, 0) for d in daily], mode="lines", stackgroup="one", name=state
        )
    fig.update_xaxes(title="day")
    fig.update_yaxes(title="nodes (end of day)")
    out.append(_figure("Nodes out of service, by lifecycle state", fig))

    mttr = results["mttr_hours"]
    fig = go.Figure()
    for stat in ("p50", "mean", "p90"):
        fig.add_bar(x=list(mttr), y=[mttr[k][stat] for k in mttr], name=stat)
    fig.update_yaxes(title="hours from failure to back in service")
    out.append(_figure("Time to repair", fig))

    reban = results["reban"]
    fig = go.Figure()
    for group, rows in (("supplier", reban["by_supplier"]), ("SKU", reban["by_sku"])):
        fig.add_bar(
            x=[f"{group}: {name}" for name in rows],
            y=[row["rate"] for row in rows.values()],
            text=[f"{row['count']}/{row['n']}" for row in rows.values()],
            name=f"by {group}",
        )
    fig.update_yaxes(title="re-banned within the window", tickformat=".0%")
    out.append(_figure("Re-ban rate after hardware repair or delivery", fig))

    by_cluster = results.get("availability_by_cluster", {})
    fig = go.Figure()
    fig.add_bar(x=list(by_cluster), y=list(by_cluster.values()), marker_color=OTHER)
    fig.update_yaxes(title="GPU-hours in service / GPU-hours", tickformat=".2%")
    out.append(_figure("Availability by cluster", fig))
    return out


HEADLINE = (
    ("interruptions_total", "unexpected interruptions", "{:,}"),
    ("hardware_share", "hardware share", "{:.1%}"),
    ("availability", "availability (GPU-hours in service / GPU-hours)", "{:.3%}"),
    ("simulated_days", "simulated days", "{:g}"),
    ("nodes", "nodes", "{:,}"),
    ("gpus", "GPUs", "{:,}"),
    ("events_processed", "events processed", "{:,}"),
    ("transitions", "lifecycle transitions recorded", "{:,}"),
    ("wall_seconds", "wall time (s)", "{:.1f}"),
)


def render(results: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(fmt.format(results[key]))}</td></tr>"
        for key, label, fmt in HEADLINE
        if key in results
    )
    plots = []
    for i, fig in enumerate(figures(results)):
        plots.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False}))
    title = f"gpufleet simulation: {results.get('scenario', '')} (seed {results.get('seed', '')})"
    source = results.get("calibration", {}).get("source", "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ text-align: left; padding: 0.25rem 1rem 0.25rem 0; border-bottom: 1px solid #eee; }}
th {{ font-weight: 500; color: #555; }}
.note {{ color: #666; font-size: 0.9rem; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="note">Failure rates calibrated on: {html.escape(source)}.</p>
<table>{rows}</table>
{"".join(plots)}
</body></html>
"""


def write_html(results: dict[str, Any], path: str | Path) -> Path:
    target = Path(path)
    target.write_text(render(results), encoding="utf-8")
    return target
