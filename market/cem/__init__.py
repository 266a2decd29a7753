"""The Credit Exchange Manager's rooms: tiers and their pools (``tiers``, persisted by
``registry``), burstable accounting (one interval by hand in ``accounting``, a fleet's
interval at once in ``accrual``, live telemetry booked exactly once in ``live``), the
exchange (swaps, rates) and its automation."""
