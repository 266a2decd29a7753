"""The credit exchange: tiers and pools, the double-entry ledger, the CEM, the order books and auctions."""
