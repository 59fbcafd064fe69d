"""Pathways: pathways."""
