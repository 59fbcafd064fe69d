"""Pathways: world."""
