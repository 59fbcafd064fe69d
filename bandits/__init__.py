"""Artwork personalization: contextual-bandit policies, logged data, off-policy evaluation.

- ``log.BanditLog``: the typed, validated log of served artwork (context, arm, propensity, reward).
- ``features.ArmFeaturizer``: profile context x a title's artwork themes -> per-arm features.
- ``policies``: uniform, epsilon-greedy, LinUCB, linear Thompson sampling, logistic; one contract.
- ``estimators``: IPS, SNIPS, direct method, doubly robust, switch-DR and replay, with intervals.
- ``serving.ArtworkSelector`` picks artwork for a page; ``nightly`` trains, evaluates, promotes.
"""
