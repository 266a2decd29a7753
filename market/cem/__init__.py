"""The Credit Exchange Manager's rooms: tiers and their pools (``tiers``, persisted by
``registry``), burstable accounting, the exchange (swaps, rates) and its automation."""
