"""Pathways serving: the home-page HTTP service over the live snapshot.

Layers, outermost first (only the first three know about Ray, ASGI or FastAPI):

- ``deployment``: Ray Serve shell (``build_app``, ``start``, ``run``, ``stop``; replicas, queue
  limits, request timeout); ``cli``: ``pathways serve``.
- ``api``: ``create_app(service)``, the routes, their 4xx answers, the overload gate, health and
  ``/metrics``; ``guards`` (body cap before parsing, request ids, JSON that cannot 500),
  ``access`` (who may call what: tokens, rate limits, scopes, accounts; request-level body checks),
  ``auth`` (JWT bearer tokens), ``metrics`` (Prometheus).
- ``logic``: ``PageService.get_page`` (one deadline split into stage budgets, each stage
  degrading only its part; the fallback ladder), ``build_service(config)``; ``stages`` (deadline,
  stage budgets), ``last_good`` (a bad snapshot at start-up: the last good one on disk),
  ``impressions`` (artwork impressions logged by the server from what it chose).
- ``snapshots`` (live snapshot, polled and swapped; pages read from the page store), ``rows``
  (stored pages to ``pathways.types.CompactRows``, JSON rendering), ``overlay`` (the rules and
  de-duplication of ``ranking.filtering``, vectorized over a page; continue watching), ``artwork``
  (the policy, its contexts, the page's artwork), ``fallback`` (the ladder), ``playback``
  (``PlaybackStore`` protocol: in memory or the Feast online store), ``events`` (request models,
  per-event checks, ``EventRecorder``: append to the event stream, then apply to playback state).
"""
