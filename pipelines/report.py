"""The replay report: one self-contained HTML page and a summary table.

:func:`render_report` turns the document ``creditx replay --json`` writes into one
HTML page with its plots embedded as PNG images (throttling by policy and tier,
throttling over time, clearing prices and exchange rates per tier, pool levels,
forecast against actual for sample instances an hour, a day and a week ahead, with
their q10-q90 bands); :func:`summary_rows` gives the table ``creditx report`` prints.
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
    ("value_cost_share", "value-weighted throttling"),
    ("value_gap_closed", "value gap closed"),
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
            value = figures.get(key)
            if value is None:
                row.append("n/a")
            elif key in ("throttled_share", "value_cost_share", "value_gap_closed"):
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


#: One sentence per policy a replay may hold; a policy not listed is still shown.
POLICY_NOTES: dict[str, str] = {
    "static": "AWS standard mode: each instance earns and spends only its own credits; "
    "what it earns above its 24-hour cap is thrown away.",
    "pool": "Each tier keeps a pool: credits above an instance's cap go to its tier's pool, "
    "and empty balances are topped up from it, shared pro rata when it runs short (the "
    "patent's free pool).",
    "pool+swap": "Pools as above, and the CEM swaps pool credits from idle tiers to saturated "
    "ones at demand-driven exchange rates.",
    "market": "Pools and the CEM, and every instance's agent trades credits in hourly call "
    "auctions, pricing its bids and asks from its owner's value and the forecasts made at "
    "the pipelines' cadence; between auctions the pools sell at a price that clears the "
    "hour's forecast, and owners who value a credit below it lend theirs.",
    "market-oracle": "The market with perfect forecasts: the agents and the CEM know each "
    "instance's mean demand of every hour ahead exactly (no band between median and upper "
    "quantile), but not the prices, the budgets or what other owners will do; a reference "
    "for forecast error, not a bound (the optimum is the bound).",
    "optimum": "The best allocation with perfect foresight that still gives every instance its "
    "own baseline (a linear programme): the least value-weighted throttling any policy "
    "could reach.",
    "pool-by-value": "Pools and swaps, the free pool topping up first the instances whose "
    "owners value a throttled vCPU-minute most.",
    "physical-limit": "Credits ignored; only the hosts' physical vCPUs bind: the least "
    "throttling any policy could reach.",
}

#: One sentence per figure of a policy's summary; figures not listed are shown by name.
FIGURE_NOTES: dict[str, str] = {
    "throttled_share": "share of the demanded vCPU-minutes that were throttled (lower is better)",
    "throttled_vcpu_minutes": "vCPU-minutes demanded but not served, summed over the fleet",
    "credits_thrown_away": "credits earned above an instance's 24-hour cap and lost "
    "(one credit = one vCPU at 100 % for one minute)",
    "instances_ever_throttled": "instances throttled in at least one 5-minute step",
    "trades": "trades the auctions settled",
    "volume_credits": "credits that changed hands in trades",
    "fees": "fees the exchange charged, in minor units of money",
    "conservation_violations": "hours whose ledger did not balance (must be 0)",
    "value_gap_closed": "share of the value-weighted throttling gap between pool+swap and the "
    "optimum that the policy closes (higher is better)",
    "value_cost_share": "throttled vCPU-minutes weighted by each owner's value, as a share of "
    "the demand weighted alike (lower is better)",
    "pool_revenue": "money the pools earned, in minor units",
}

#: One sentence per target of the replay.
TARGET_NOTES: dict[str, str] = {
    "market_value_gap_closed": "share of the value gap between pool+swap and the optimum that "
    "the market closes: the figure that judges the exchange (higher is better)",
    "market_oracle_value_gap_closed": "the same for the market with perfect forecasts",
    "pool_by_value_gap_closed": "the same for the free pool drawn in order of value: a market "
    "should beat it",
    "market_reduction_vs_static": "how much less the market throttles than static, as a "
    "share of static's throttled vCPU-minutes",
    "market_gap_closed_vs_physical_limit": "context: share of the gap between static and "
    "physical-limit that the market closes (pool+swap alone may close as much)",
}

# Figures of a policy that are bookkeeping, not outcomes.
_HIDDEN = {"seconds", "ledger_entries", "demand_vcpu_minutes", "swapped_credits_in"}


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _hours(document: Mapping[str, Any]) -> Any:
    import pandas as pd

    return pd.date_range(pd.Timestamp(document["start"]), periods=document["hours"], freq="h")


def _date_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")


def _legend_outside(ax: Any) -> None:
    # Beside the axes, never over the data.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _values(series: Sequence[Any]) -> Any:
    import numpy as np

    return np.asarray([np.nan if v is None else v for v in series], dtype=float)


def _plots(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    import matplotlib

    matplotlib.use("Agg")

    policies: dict[str, Any] = document["policies"]
    tiers: Sequence[str] = document["tiers"]
    hours = _hours(document)
    out = [_throttling_by_tier(policies, tiers), _throttling_over_time(policies, hours)]
    market = next((policies[p] for p in ("market", "market-oracle") if p in policies), None)
    if market is not None:
        out.append(_prices_and_rates(market, tiers, hours))
    pooled = [p for p in ("pool", "pool+swap", "market") if p in policies]
    if pooled:
        out.append(_pool_levels(policies, pooled, tiers, hours))
    samples = [_sample_paths(s) for s in document.get("forecast_samples") or []]
    if samples:
        out.append(_forecast_figure(samples, hours))
    return out


def _throttling_by_tier(policies: dict[str, Any], tiers: Sequence[str]) -> tuple[str, str, str]:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / max(1, len(policies))
    x = np.arange(len(tiers))
    for i, (name, figures) in enumerate(policies.items()):
        shares = [100 * figures["tiers"][t]["throttled_share"] for t in tiers]
        ax.bar(x + i * width, shares, width, label=name)
    ax.set_xticks(x + width * (len(policies) - 1) / 2, tiers)
    ax.set_ylabel("throttled share of demand (%)")
    _legend_outside(ax)
    return (
        "Throttling by policy and tier",
        "Share of each tier's demanded vCPU-minutes that was throttled; lower is better.",
        _png(fig),
    )


def _throttling_over_time(policies: dict[str, Any], hours: Any) -> tuple[str, str, str]:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 3.8))
    for name, figures in policies.items():
        series = np.asarray(figures["series"]["throttled_vcpu_minutes"], dtype=float)
        ax.plot(hours[: len(series)], np.cumsum(series.sum(axis=1)), label=name)
    ax.set_ylabel("throttled vCPU-minutes, cumulative")
    _date_axis(ax)
    _legend_outside(ax)
    return (
        "Throttling over time",
        "vCPU-minutes throttled since the start, summed over the fleet.",
        _png(fig),
    )


def _prices_and_rates(
    market: Mapping[str, Any], tiers: Sequence[str], hours: Any
) -> tuple[str, str, str]:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(2, 1, figsize=(10, 6.4), sharex=True)
    prices = np.asarray(
        [[np.nan if v is None else v for v in row] for row in market["series"]["clearing_price"]],
        dtype=float,
    )
    rates = np.asarray(market["series"]["exchange_rate"], dtype=float)
    for k, tier in enumerate(tiers):
        if prices.size:
            left.plot(hours[: len(prices)], prices[:, k], "o", markersize=5, label=tier)
        if rates.size:
            right.plot(hours[: len(rates)], rates[:, k], label=tier)
    left.set_ylabel("clearing price\n(minor units per credit)")
    right.set_ylabel("exchange rate\n(value of a credit, bronze = 1)")
    right.set_ylim(bottom=0)
    _date_axis(right)
    _legend_outside(left)
    _legend_outside(right)
    return (
        "Clearing prices and exchange rates",
        "Top: the price of each hourly auction per tier (no dot: no trade that hour). "
        "Bottom: each tier's exchange rate as the CEM moves it with demand.",
        _png(fig),
    )


def _pool_levels(
    policies: dict[str, Any], pooled: Sequence[str], tiers: Sequence[str], hours: Any
) -> tuple[str, str, str]:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(pooled), 1, figsize=(10, 2.6 * len(pooled)), squeeze=False)
    for ax, name in zip(axes[:, 0], pooled, strict=True):
        levels = np.asarray(policies[name]["series"]["pool_credits"], dtype=float)
        for k, tier in enumerate(tiers):
            if levels.size:
                ax.plot(hours[: len(levels)], levels[:, k], label=tier)
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylabel("credits in pool")
        _date_axis(ax)
        _legend_outside(ax)
    fig.tight_layout()
    return "Pool levels", "Credits each tier's pool holds at the end of each hour.", _png(fig)


#: Each horizon's panel: its title and the colour of its median and q10-q90 band.
_HORIZON_PANELS: dict[str, tuple[str, str]] = {
    "hour": ("an hour ahead", "tab:blue"),
    "day": ("a day ahead", "tab:orange"),
    "week": ("a week ahead", "tab:green"),
}


def _sample_paths(sample: Mapping[str, Any]) -> dict[str, Any]:
    # A document written before the day and week paths holds the hour-ahead forecast
    # and its q90 only (and maybe a rolling day-ahead one): shown from the median up.
    if "hour" in sample:
        return dict(sample)
    out = {k: sample[k] for k in ("instance", "tier", "actual")}
    out["hour"] = {"origins": [], "forecast": sample["forecast"], "q90": sample["q90"]}
    if "forecast_ahead" in sample:
        out["day"] = {"origins": [], "forecast": sample["forecast_ahead"]}
        out["day"]["q90"] = sample["q90_ahead"]
    return out


def _forecast_figure(samples: list[dict[str, Any]], hours: Any) -> tuple[str, str, str]:
    import matplotlib.pyplot as plt

    from pipelines.replay.run import SAMPLES_PICKED

    horizons = [h for h in _HORIZON_PANELS if h in samples[0]]
    fig, axes = plt.subplots(
        len(samples),
        len(horizons),
        figsize=(4.6 * len(horizons), 2.6 * len(samples)),
        squeeze=False,
        layout="constrained",
        sharey="row",
    )
    for row, sample in zip(axes, samples, strict=True):
        actual = _values(sample["actual"])
        times = hours[: len(actual)]
        for ax, horizon in zip(row, horizons, strict=True):
            label, colour = _HORIZON_PANELS[horizon]
            path = sample[horizon]
            median = _values(path["forecast"])
            upper = _values(path["q90"])
            lower = _values(path["q10"]) if "q10" in path else median
            ax.fill_between(
                times, lower, upper, color=colour, alpha=0.25, linewidth=0, label="q10 to q90"
            )
            ax.plot(times, median, color=colour, linewidth=0.9, label="median forecast")
            ax.plot(times, actual, color="black", linewidth=0.7, label="actual")
            for origin in path.get("origins") or []:
                if origin < len(times):
                    ax.axvline(times[origin], color="grey", linestyle=":", linewidth=0.7)
            ax.set_title(f"{sample['instance']} ({sample['tier']}), {label}", fontsize=9)
            ax.set_ylabel("CPU %")
            _date_axis(ax)
    for ax in axes[0]:
        ax.legend(fontsize=7, loc="upper left")
    picked = SAMPLES_PICKED.format(n=len(samples))
    caption = (
        "Hourly CPU of sample instances against the replay's forecasts of it: an hour "
        "ahead (each hour forecast at the hour before), a day ahead (each day forecast at "
        "its first hour: the path the agents read at the daily refit) and a week ahead "
        "(forecast at the first hour of each week for the 168 hours after, refitted "
        "weekly). The shaded band spans the 10th to the 90th percentile (q10 to q90); "
        "dotted lines mark where each path starts. The sample instances are, "
        f"{picked}."
    )
    return "Forecast against actual", caption, _png(fig)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def findings(document: Mapping[str, Any]) -> list[str]:
    """Return the sentences that say what the replay's figures show.

    Each is written from the figures: which policy throttles least, what the market
    adds to pools and swaps, and how forecasts compare with perfect ones.
    """
    policies: Mapping[str, Any] = document["policies"]
    share = {n: float(f["throttled_share"]) for n, f in policies.items()}
    minutes = {n: float(f["throttled_vcpu_minutes"]) for n, f in policies.items()}
    out = _least_throttling(share, minutes)
    if "physical-limit" in share:
        out.append(
            f"With credits ignored the hosts alone would throttle "
            f"{_percent(share['physical-limit'])}: the floor of any credit policy."
        )
    if "market" in minutes and "pool+swap" in minutes:
        out.append(_market_against_swaps(minutes, int(policies["market"].get("trades", 0))))
    closed = {n: f.get("value_gap_closed") for n, f in policies.items()}
    if closed.get("market") is not None:
        sentence = (
            f"Weighted by what each owner puts on a throttled vCPU-minute, the market closes "
            f"{_percent(closed['market'])} of the gap between pool+swap and the optimum"
        )
        if closed.get("pool-by-value") is not None:
            sentence += (
                f"; a free pool drawn in order of value closes {_percent(closed['pool-by-value'])}"
            )
        out.append(sentence + ".")
    if "market" in minutes and "market-oracle" in minutes:
        out.extend(_perfect_against_learned(minutes))
    return out


def _least_throttling(share: dict[str, float], minutes: dict[str, float]) -> list[str]:
    credit_bound = [n for n in share if n != "physical-limit"]
    if not credit_bound:
        return []
    least = min(minutes[n] for n in credit_bound)
    best = [n for n in credit_bound if minutes[n] - least < 0.5]
    if len(best) == len(credit_bound) > 1:
        return [
            f"Every credit policy throttles the same: {_percent(share[best[0]])} of the "
            f"demand ({least:,.0f} vCPU-minutes): on this fleet no policy moves credits "
            "to where throttling happens."
        ]
    return [
        f"Under credits, {' and '.join(best)} throttle{'s' if len(best) == 1 else ''} "
        f"least: {_percent(share[best[0]])} of the demand ({least:,.0f} vCPU-minutes)."
    ]


def _market_against_swaps(minutes: dict[str, float], trades: int) -> str:
    if abs(minutes["market"] - minutes["pool+swap"]) < 0.5:
        return (
            f"The market throttles as much as pool+swap ({trades:,} trades). A market "
            "only helps when credits are scarce for some instances while others hold "
            "more than they will need; where the pools and swaps already cover demand, "
            "or no agent expects a surplus, there is nothing to trade that would help."
        )
    change = (minutes["pool+swap"] - minutes["market"]) / max(minutes["pool+swap"], 1e-9)
    word = "less" if change > 0 else "more"
    return (
        f"The market throttles {abs(100 * change):.1f} % {word} than pool+swap, "
        f"with {trades:,} trades."
    )


def _perfect_against_learned(minutes: dict[str, float]) -> list[str]:
    if minutes["market-oracle"] > minutes["market"] + 0.5:
        return [
            "The agents with perfect forecasts throttle more than the agents with "
            f"learned ones ({minutes['market-oracle']:,.0f} against "
            f"{minutes['market']:,.0f} vCPU-minutes). Perfect foresight of demand is "
            "not foresight of prices: planning on exact needs, the CEM keeps the "
            "pools leaner and their scarcity price higher, so a heavy buyer's funds "
            "run out sooner, and exact needs can price the pools where the owners "
            "counted on to lend do not (docs/scenario.md)."
        ]
    if minutes["market-oracle"] < minutes["market"] - 0.5:
        return [
            "Perfect forecasts throttle less than learned ones "
            f"({minutes['market-oracle']:,.0f} against {minutes['market']:,.0f} "
            "vCPU-minutes): better forecasts are worth that much here."
        ]
    return []


def _explained(notes: Mapping[str, str], names: Sequence[str]) -> str:
    return "".join(
        f"<dt>{html.escape(n)}</dt><dd>{html.escape(notes.get(n, 'no description'))}</dd>"
        for n in names
    )


def render_report(document: Mapping[str, Any]) -> str:
    """Return the replay report as one self-contained HTML page.

    Every policy and figure the document holds is shown, each explained in a sentence
    where :data:`POLICY_NOTES` and :data:`FIGURE_NOTES` know it.

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
    policies: Mapping[str, Any] = document["policies"]
    extra = _extra_columns(policies)
    targets = document.get("targets") or {}
    target_rows = "".join(
        f"<tr><td>{html.escape(k.replace('_', ' '))}</td><td>{_percent(v)}</td>"
        f"<td>{html.escape(TARGET_NOTES.get(k, ''))}</td></tr>"
        for k, v in targets.items()
    )
    figures = "".join(
        f'<section><h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p><img alt="'
        f'{html.escape(title)}" src="data:image/png;base64,{data}"></section>'
        for title, caption, data in _plots(document)
    )
    shows = "".join(f"<li>{html.escape(s)}</li>" for s in findings(document))
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in document.get("notes") or [])
    method_items = "".join(f"<li>{m}</li>" for m in _method(document))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>creditx fleet replay</title>
<style>
{_STYLE}</style></head><body>
<h1>creditx fleet replay</h1>
<p>How much CPU each credit policy throttles when the same fleet runs through it.</p>
<div class="shows"><h2>What this shows</h2><ul>{shows}</ul></div>
<h2>Summary</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{_extra_table(policies, extra)}
<h2>Targets</h2>
<table><tbody>{target_rows}</tbody></table>
<h2>How the replay was run</h2>
<ul>{method_items}</ul>
{f"<h3>Notes on the telemetry</h3><ul>{notes}</ul>" if notes else ""}
<h2>The policies</h2>
<dl>{_explained(POLICY_NOTES, list(policies))}</dl>
<h2>The figures</h2>
<dl>{_explained(FIGURE_NOTES, [k for k, _ in _COLUMNS[1:]] + extra)}</dl>
{figures}
</body></html>
"""


_STYLE = """\
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222;
  line-height: 1.45; padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td:nth-child(3) { text-align: left; }
dt { font-weight: 600; margin-top: 0.4rem; }
dd { margin-left: 1.2rem; }
img { max-width: 100%; }
.shows { background: #f3f6fa; border-left: 4px solid #3b6ea5; padding: 0.6rem 1.2rem; }
"""


def _extra_columns(policies: Mapping[str, Any]) -> list[str]:
    # the numbers the policies report beyond the summary's columns
    shown = {key for key, _ in _COLUMNS}
    return sorted(
        {
            k
            for f in policies.values()
            for k, v in f.items()
            if k not in shown and k not in _HIDDEN and isinstance(v, int | float)
        }
    )


def _extra_table(policies: Mapping[str, Any], extra: list[str]) -> str:
    if not extra:
        return ""
    extra_head = "".join(f"<th>{html.escape(k.replace('_', ' '))}</th>" for k in extra)
    extra_body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{'' if f.get(k) is None else f'{f[k]:,.3g}'}</td>" for k in extra)
        + "</tr>"
        for name, f in policies.items()
    )
    return (
        f"<table><thead><tr><th>policy</th>{extra_head}</tr></thead>"
        f"<tbody>{extra_body}</tbody></table>"
    )


def _method(document: Mapping[str, Any]) -> list[str]:
    # how the replay was run, as HTML sentences
    scenario = document.get("scenario") or {}
    samples = document.get("forecast_samples") or []
    source = html.escape(str(document.get("source") or "telemetry"))
    method = [
        f"{document['instances']} instances of {source}, replayed in 5-minute steps over "
        f"{document['hours']} hours from {html.escape(str(document['start']))} (UTC).",
        "Tiers: instances are dealt to the scenario's tiers "
        f"({html.escape(', '.join(t['name'] for t in scenario.get('tiers', [])))}) in turn, "
        "in the order of their ids; tiers in the telemetry are not used.",
        f"Every instance has {scenario.get('vcpus', '?')} vCPUs and starts with "
        f"{_percent(float(scenario.get('starting_balance_share', 0)))} of its 24-hour credit "
        "cap; each tier's hosts hold "
        f"{html.escape(str(scenario.get('physical_vcpus_per_vcpu', '?')))} physical vCPUs per "
        "instance vCPU.",
        "Units: a credit is one vCPU at 100 % for one minute; throttling is counted in "
        "vCPU-minutes demanded but not served; money in integer minor units.",
    ]
    if samples:
        from pipelines.replay.run import SAMPLES_PICKED

        method.append(f"Forecast samples: {SAMPLES_PICKED.format(n=len(samples))}.")
    return method


def write_report(document: Mapping[str, Any], path: Path) -> Path:
    """Write the HTML report of a replay document to ``path`` and return it."""
    page = render_report(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
