"""Pathways: candidate generators.

One interface (``base.CandidateSource``: ``name``, ``serves_cohorts``, ``generate(profile)``),
one module per source: ``als`` (factor models through faiss), ``because_you_watched``,
``trending`` (and the cohort "popular" list), ``genres``, ``continue_watching``,
``new_releases``; ``registry`` builds them all and generates every row for a profile.
"""
