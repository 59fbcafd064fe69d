"""Pathways: candidates."""
