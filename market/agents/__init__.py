"""The Virtual Instance Agents: what an instance's forecast and owner value make it do.

``forecast`` is what an agent reads of a forecast; ``valuation`` prices credits from
the owner's value; ``decision`` decides (one agent, or a fleet over arrays); ``runner``
runs a fleet's agents in process over the venue.
"""
