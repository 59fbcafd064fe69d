"""Pathways serving: the home-page HTTP service over the live snapshot.

Layers, outermost first (only the first two know about Ray or FastAPI):

- ``deployment``: Ray Serve shell (``build_app``, ``start``, ``run``, ``stop``); ``cli``: ``pathways serve``.
- ``api``: ``create_app(service)``, the FastAPI routes and their 4xx answers.
- ``logic``: ``PageService.get_page`` (personalize within budget, else the fallback ladder),
  ``build_service(config)``.
- ``snapshots`` (live snapshot, polled and swapped), ``rows`` (stored pages to
  ``pathways.types.CompactRows``, JSON rendering), ``overlay`` (the rules and de-duplication of
  ``ranking.filtering``, continue watching), ``artwork`` (the policy, its contexts, the page's
  artwork), ``fallback`` (the ladder), ``playback``
  (``PlaybackStore`` protocol: in memory or the Feast online store), ``events`` (request models,
  per-event checks, ``EventRecorder``: append to the event stream, then apply to playback state).
"""
