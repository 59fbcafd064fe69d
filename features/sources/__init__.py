"""External data sources mapped onto the Pathways schemas (``features/schema.py``)."""

from features.sources.movielens import LoadedData, detect_layout, load_movielens

__all__ = ["LoadedData", "detect_layout", "load_movielens"]
