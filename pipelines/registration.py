"""Instances join the market when their telemetry is ingested.

:func:`register_instances` stores every instance of a snapshot that the creditx store
does not hold yet, so it can be given an agent token, trade and read its forecasts.
Its tier comes from the telemetry's ``tier`` column where that names a stored tier,
else it is :data:`data.columns.DEFAULT_TIER`; its vCPUs from the ``vcpus`` column, else
:data:`data.columns.DEFAULT_VCPUS`. Instances already stored keep their tier and size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from data.columns import DEFAULT_TIER, DEFAULT_VCPUS
from pipelines.errors import InvalidParametersError

if TYPE_CHECKING:
    import pandas as pd

    from market.cem.tiers import Instance


@dataclass(frozen=True, slots=True)
class Registration:
    """What :func:`register_instances` did."""

    added: int
    known: int
    defaulted_tier: int
    tiers: dict[str, int]

    def summary(self, default_tier: str) -> str:
        """Return one line for the user."""
        tiers = ", ".join(f"{n} {t}" for t, n in sorted(self.tiers.items())) or "none"
        line = f"registered {self.added} new instances in the market ({tiers})"
        if self.known:
            line += f"; {self.known} were registered already"
        if self.defaulted_tier:
            line += f"; {self.defaulted_tier} without a tier in the data went to {default_tier}"
        return line


def register_instances(
    frame: pd.DataFrame,
    store_url: str,
    tiers_config: Path | None = None,
    default_tier: str = DEFAULT_TIER,
) -> Registration:
    """Store the instances of ``frame`` that the creditx store does not hold yet.

    Parameters
    ----------
    frame
        Telemetry in the frame contract (a snapshot), with ``tier`` and ``vcpus`` where
        known.
    store_url
        The creditx store; migrated, and given the tiers of ``tiers_config`` if it has
        none yet.
    tiers_config
        Tier configuration for a fresh store; the built-in tiers by default.
    default_tier
        Tier of the instances whose telemetry names no stored tier.

    Raises
    ------
    InvalidParametersError
        If ``default_tier`` is not a stored tier.
    """
    from market.cem.registry import Registry
    from market.cem.tiers import load_config
    from market.ledger import create_store_engine
    from market.migrations import upgrade

    engine = create_store_engine(store_url)
    try:
        upgrade(engine)
        registry = Registry(engine)
        manager = registry.load()
        if not manager.tiers():
            registry.save(load_config(tiers_config))
            manager = registry.load()
        names = {t.name for t in manager.tiers()}
        if default_tier not in names:
            raise InvalidParametersError("tier", f"{default_tier!r} is not one of {sorted(names)}")
        known = {i.id for i in manager.instances()}
        ids, new, defaulted = _unregistered(frame, known, names, default_tier)
        added = registry.add_instances(new)
    finally:
        engine.dispose()
    counts: dict[str, int] = {}
    for instance in added:
        counts[instance.tier] = counts.get(instance.tier, 0) + 1
    return Registration(
        added=len(added), known=len(ids) - len(new), defaulted_tier=defaulted, tiers=counts
    )


def _unregistered(
    frame: pd.DataFrame, known: set[str], names: set[str], default_tier: str
) -> tuple[list[str], list[Instance], int]:
    # every instance id of the frame; those not stored yet, on their tier or the default
    # one; and how many went to the default tier
    import pandas as pd

    from data.frame import ID_COL, TIER_COL, VCPUS_COL
    from market.cem.tiers import Instance

    rows = frame.drop_duplicates(ID_COL)
    ids = rows[ID_COL].astype(str).tolist()
    tiers = rows[TIER_COL].astype(str).str.lower().tolist() if TIER_COL in rows else [""] * len(ids)
    vcpus = (
        pd.to_numeric(rows[VCPUS_COL], errors="coerce").tolist()
        if VCPUS_COL in rows
        else [DEFAULT_VCPUS] * len(ids)
    )
    new: list[Instance] = []
    defaulted = 0
    for iid, tier, size in zip(ids, tiers, vcpus, strict=True):
        if iid in known:
            continue
        if tier not in names:
            tier, defaulted = default_tier, defaulted + 1
        count = int(size) if size == size and size and size > 0 else DEFAULT_VCPUS
        new.append(Instance(iid, tier, count, owner=iid))
    return ids, new, defaulted
