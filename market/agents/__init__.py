"""The Virtual Instance Agents: what an instance's forecast and owner value make it
do in the market (``valuation`` prices credits, ``agent`` decides and runs orders)."""
