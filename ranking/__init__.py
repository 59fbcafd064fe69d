"""Ranking and page assembly: the hard rules, one row filter, the row scorer and the page assembler."""
