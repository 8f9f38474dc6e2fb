"""Tuning: search spaces from the policies' schemas (``space``), the public tuner bases with
their bookkeeping (``search``), the study state machine (``study``) and its driver (``driver``),
and the analyses the tuners share (``range_analysis``, ``horizon_fit``)."""
