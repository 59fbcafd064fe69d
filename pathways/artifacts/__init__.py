"""Artifacts that cross stages: what training writes and candidates, ranking, bandits and serving load.

One module per artifact, each with ``save(path)`` / ``load(path)``; ``registry`` holds the MLflow
wrappers and the one loader of registered models. Import from the submodules (``ranker`` needs torch,
``registry`` needs mlflow: neither is imported here).
"""
