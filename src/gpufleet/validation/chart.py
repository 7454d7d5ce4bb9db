"""The threshold simulator as a chart people can open anywhere: one self-contained HTML file, no CDN."""

from __future__ import annotations

from gpufleet.validation.analytics import ThresholdReport


def threshold_chart_html(report: ThresholdReport) -> str:
    """Value of pass k and extra admitted against k (counts, left axis), with GPU-hours saved (right axis)."""
    # Imported here: plotly takes a while to load and only this command needs it.
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ks = [r.k for r in report.rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Bar(x=ks, y=[r.value_of_pass for r in report.rows], name="value of pass k: failures only pass k caught"),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=[r.extra_admitted for r in report.rows],
            mode="lines+markers",
            name="extra admitted if only k passes were required",
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=[round(r.gpu_hours_saved, 1) for r in report.rows],
            mode="lines",
            line={"dash": "dot"},
            name="validation GPU-hours saved",
        ),
        secondary_y=True,
    )
    scope = ", ".join(f"{k} {v}" for k, v in report.scope.as_dict().items() if v) or "whole fleet"
    rate = report.rows[0].reban_rate_at_n if report.rows else 0.0
    fig.update_layout(
        title=(
            f"Threshold simulator ({scope}): {report.attempts} completed full-suite attempts, "
            f"N = {report.passes_required}, re-ban rate of nodes admitted at N {rate:.1%} ({report.days} days)"
        ),
        xaxis={"title": "passes required (k)", "dtick": 1},
        barmode="overlay",
        legend={"orientation": "h", "y": -0.2},
    )
    fig.update_yaxes(title_text="attempts", secondary_y=False)
    fig.update_yaxes(title_text="GPU-hours", secondary_y=True)
    return str(fig.to_html(include_plotlyjs=True, full_html=True))
