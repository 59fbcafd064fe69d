"""Tests of the A/B analysis: validation, SRM, CUPED, lifts, reports, figures and the CLI."""
