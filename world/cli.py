"""``pathways world generate --size {tiny,small,default,large} --seed N --out DIR``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from world.sizes import SIZES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``world`` (with ``generate``) to the pathways command line."""
    world = subparsers.add_parser("world", help="the synthetic world: catalog, members, event log")
    wsub = world.add_subparsers(dest="world_command", metavar="ACTION")
    wsub.required = True
    gen = wsub.add_parser("generate", help="generate a world into a folder (titles, profiles, events, truth)")
    gen.add_argument("--size", default="default", choices=list(SIZES), help="size preset (default: default)")
    gen.add_argument("--seed", type=int, default=None, help="random seed (default: world.seed of the config)")
    gen.add_argument("--out", type=Path, required=True, help="folder to write (created if needed)")
    gen.add_argument("--chunk-profiles", type=int, default=None, help="profiles simulated per Parquet chunk")
    gen.add_argument("--config", type=Path, default=None, help="a Pathways TOML/JSON config file")
    gen.set_defaults(handler=run_generate)
    bad = wsub.add_parser("corrupt", help="write a copy of a world's events with invalid rows mixed in")
    bad.add_argument("--world", type=Path, required=True, help="a generated world folder")
    bad.add_argument("--fraction", type=float, default=0.05, help="share of bad rows to add, in (0, 1]")
    bad.add_argument("--seed", type=int, default=0, help="random seed")
    bad.add_argument("--out", type=Path, required=True, help="the events Parquet file to write")
    bad.set_defaults(handler=run_corrupt)


def run_generate(args: argparse.Namespace) -> int:
    """Generate the world ``args`` describe; print where it went and its row counts."""
    from pathways.config import load_config
    from world.generator import generate_to_dir
    from world.sizes import preset

    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.chunk_profiles is not None and args.chunk_profiles < 1:
        raise ValueError(f"--chunk-profiles must be >= 1, got {args.chunk_profiles}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out must be a folder, but {args.out} is a file")
    base = load_config(args.config).world
    if args.seed is not None:
        base = base.model_copy(update={"seed": args.seed})
    config = preset(args.size, base=base)
    t0 = time.perf_counter()
    kwargs = {"chunk_profiles": args.chunk_profiles} if args.chunk_profiles else {}
    counts = generate_to_dir(config, args.out, progress=args.size == "large", **kwargs)
    seconds = time.perf_counter() - t0
    print(
        f"world '{args.size}' (seed {config.seed}) written to {args.out} in {seconds:.1f} s: "
        f"{counts['titles']:,} titles, {counts['profiles']:,} profiles, {counts['events']:,} events"
    )
    return 0


def run_corrupt(args: argparse.Namespace) -> int:
    """Mix invalid rows (one kind per validator reason) into a world's events; print the counts."""
    import pyarrow.parquet as pq

    from world.corrupt import corrupt_events

    if not 0.0 < args.fraction <= 1.0:
        raise ValueError(f"--fraction must be in (0, 1], got {args.fraction}")
    files = {name: args.world / f"{name}.parquet" for name in ("events", "titles", "profiles")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"not a world folder, missing: {', '.join(missing)}")
    events, counts = corrupt_events(pq.read_table(files["events"]), args.fraction, args.seed,
                                    pq.read_table(files["profiles"]), pq.read_table(files["titles"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, args.out)
    print(f"{events.num_rows:,} events written to {args.out}, of which bad: "
          + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 0
