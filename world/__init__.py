"""Pathways' synthetic world: a catalog, members with latent tastes, their event log, and the truth.

Entry points (import them from their modules; this package imports nothing heavy):

- ``world.generator``: ``generate_world(config) -> World``, ``generate_to_dir(config, out_dir)``,
  ``load_world(dir)``; ``World.write(dir)`` writes titles/profiles/events Parquet and truth.npz.
- ``world.sizes``: ``preset("tiny" | "small" | "default" | "large" | "1k" | "10k" | "100k" | "300k" | "1m", base=WorldConfig())``.
- ``world.corrupt``: ``corrupt_events(events, fraction, seed, profiles, titles)`` for ingestion tests.
- ``world.artwork``: ``ArtworkTruth``, how the artwork variant shown changes the chance of a play.
- ``world.cli``: ``pathways world generate --size ... --seed N --out DIR``.

Modules: ``vocab`` (genres, regions, word lists), ``catalog`` (titles and traits), ``members``
(profiles and tastes), ``simulate`` (sessions, pages, plays), ``playback`` (binge, heartbeats,
pauses, completions, ratings), ``events`` (assembly into ``EVENT_SCHEMA``).
"""
