"""Tests of the synthetic world: catalog, members, behaviour, determinism, the CLI."""
