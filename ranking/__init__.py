"""Pathways: ranking."""
