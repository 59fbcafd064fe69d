"""A/B experiments: cell allocation (used by serving and the nightly job) and analysis for analysts.

``allocation`` assigns cells; the analysis reads a per-unit table (``units``) and gives the
sample-ratio check (``srm``), CUPED (``cuped``), intervals (``intervals``), lifts (``lift``),
reports (``report``), metrics from the event log (``event_metrics``) and figures (``plots``).
"""
