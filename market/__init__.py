"""The credit exchange: tier pools, the double-entry ledger, the CEM, order books, auctions."""
