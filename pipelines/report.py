"""The replay report: one self-contained HTML page and a summary table.

:func:`render_report` turns the document ``creditx replay --json`` writes into one
HTML page with its plots embedded as PNG images (throttling by policy and tier,
throttling over time, clearing prices and exchange rates per tier, pool levels,
forecast against actual for sample instances); :func:`summary_rows` gives the table
``creditx report`` prints.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.replay.errors import ReportError

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("policy", "policy"),
    ("throttled_share", "throttled share"),
    ("throttled_vcpu_minutes", "throttled vCPU-min"),
    ("credits_thrown_away", "credits thrown away"),
    ("instances_ever_throttled", "instances throttled"),
    ("trades", "trades"),
    ("volume_credits", "volume (credits)"),
    ("fees", "fees"),
    ("conservation_violations", "conservation violations"),
)


def _check(document: Mapping[str, Any]) -> None:
    for key in ("policies", "tiers", "hours", "start"):
        if key not in document:
            raise ReportError(f"the key {key!r} is missing")
    if not document["policies"]:
        raise ReportError("it holds no policy")


def summary_rows(document: Mapping[str, Any]) -> list[list[str]]:
    """Return one formatted row per policy, in the order of :data:`_COLUMNS`.

    Raises
    ------
    ReportError
        If ``document`` is not a replay document.
    """
    _check(document)
    rows = []
    for name, figures in document["policies"].items():
        row = [name]
        for key, _ in _COLUMNS[1:]:
            value = figures[key]
            if key == "throttled_share":
                row.append(f"{100 * value:.2f} %")
            elif isinstance(value, float):
                row.append(f"{value:,.1f}")
            else:
                row.append(f"{value:,}")
        rows.append(row)
    return rows


def headers() -> list[str]:
    """Return the column titles of :func:`summary_rows`."""
    return [title for _, title in _COLUMNS]


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plots(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    policies: dict[str, Any] = document["policies"]
    tiers: Sequence[str] = document["tiers"]
    out: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / max(1, len(policies))
    x = np.arange(len(tiers))
    for i, (name, figures) in enumerate(policies.items()):
        shares = [100 * figures["tiers"][t]["throttled_share"] for t in tiers]
        ax.bar(x + i * width, shares, width, label=name)
    ax.set_xticks(x + width * (len(policies) - 1) / 2, tiers)
    ax.set_ylabel("throttled share of demand (%)")
    ax.legend(fontsize=8)
    ax.set_title("Throttling by policy and tier")
    out.append(("Throttling by policy and tier", _png(fig)))

    fig, ax = plt.subplots(figsize=(9, 3.8))
    for name, figures in policies.items():
        series = np.asarray(figures["series"]["throttled_vcpu_minutes"], dtype=float)
        ax.plot(np.cumsum(series.sum(axis=1)), label=name)
    ax.set_xlabel("hour")
    ax.set_ylabel("throttled vCPU-minutes, cumulative")
    ax.legend(fontsize=8)
    ax.set_title("Throttling over time")
    out.append(("Throttling over time", _png(fig)))

    market = next((policies[p] for p in ("market", "market-oracle") if p in policies), None)
    if market is not None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
        prices = np.asarray(
            [
                [np.nan if v is None else v for v in row]
                for row in market["series"]["clearing_price"]
            ],
            dtype=float,
        )
        rates = np.asarray(market["series"]["exchange_rate"], dtype=float)
        for k, tier in enumerate(tiers):
            if prices.size:
                left.plot(prices[:, k], ".", markersize=3, label=tier)
            if rates.size:
                right.plot(rates[:, k], label=tier)
        left.set_title("Hourly clearing price per tier (market)")
        left.set_ylabel("minor units per credit")
        left.set_xlabel("hour")
        left.legend(fontsize=8)
        right.set_title("Exchange rate per tier")
        # Rates can spread over orders of magnitude once the CEM moves them.
        right.set_yscale("log")
        right.set_xlabel("hour")
        right.legend(fontsize=8)
        out.append(("Prices and exchange rates", _png(fig)))

    pooled = [p for p in ("pool", "pool+swap", "market") if p in policies]
    if pooled:
        fig, axes = plt.subplots(1, len(pooled), figsize=(4 * len(pooled), 3.4), squeeze=False)
        for ax, name in zip(axes[0], pooled, strict=True):
            levels = np.asarray(policies[name]["series"]["pool_credits"], dtype=float)
            for k, tier in enumerate(tiers):
                if levels.size:
                    ax.plot(levels[:, k], label=tier)
            ax.set_title(f"Pool levels ({name})")
            ax.set_xlabel("hour")
            ax.set_ylabel("credits")
            ax.legend(fontsize=8)
        out.append(("Pool levels", _png(fig)))

    samples = document.get("forecast_samples") or []
    if samples:
        fig, axes = plt.subplots(
            len(samples), 1, figsize=(10, 2.4 * len(samples)), squeeze=False, layout="constrained"
        )
        for ax, sample in zip(axes[:, 0], samples, strict=True):
            actual = np.asarray(sample["actual"], dtype=float)
            forecast = np.asarray(
                [np.nan if v is None else v for v in sample["forecast"]], dtype=float
            )
            upper = np.asarray([np.nan if v is None else v for v in sample["q90"]], dtype=float)
            ax.plot(actual, color="black", linewidth=0.8, label="actual")
            ax.plot(forecast, color="tab:blue", linewidth=0.8, label="forecast (hour ahead)")
            ax.plot(upper, color="tab:orange", linewidth=0.6, label="q90")
            ax.set_title(f"{sample['instance']} ({sample['tier']})", fontsize=9)
            ax.set_ylabel("CPU %")
            ax.legend(fontsize=7, loc="upper right")
        axes[-1, 0].set_xlabel("hour")
        out.append(("Forecast against actual", _png(fig)))
    return out


def render_report(document: Mapping[str, Any]) -> str:
    """Return the replay report as one self-contained HTML page.

    Raises
    ------
    ReportError
        If ``document`` is not a replay document.
    """
    rows = summary_rows(document)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers())
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    targets = document.get("targets") or {}
    target_rows = "".join(
        f"<tr><td>{html.escape(k.replace('_', ' '))}</td>"
        f"<td>{'n/a' if v is None else f'{100 * v:.1f} %'}</td></tr>"
        for k, v in targets.items()
    )
    figures = "".join(
        f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{data}">'
        for title, data in _plots(document)
    )
    source = html.escape(str(document.get("source") or "telemetry"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>creditx fleet replay</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>creditx fleet replay</h1>
<p>{document["instances"]} instances of {source}, {document["hours"]} hours from
{html.escape(str(document["start"]))}; tiers {html.escape(", ".join(document["tiers"]))}.</p>
<h2>Summary</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Targets</h2>
<table><tbody>{target_rows}</tbody></table>
{figures}
</body></html>
"""


def write_report(document: Mapping[str, Any], path: Path) -> Path:
    """Write the HTML report of a replay document to ``path`` and return it."""
    page = render_report(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
