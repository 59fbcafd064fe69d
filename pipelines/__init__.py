"""Pathways: pipelines."""
