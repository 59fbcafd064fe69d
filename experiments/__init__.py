"""Pathways: experiments."""
