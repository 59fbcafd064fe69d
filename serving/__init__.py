"""Pathways: serving."""
