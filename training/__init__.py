"""Pathways: training."""
