"""Pathways: features."""
