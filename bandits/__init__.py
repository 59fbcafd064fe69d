"""Pathways: bandits."""
