"""``pathways bandits simulate`` and ``pathways bandits evaluate``.

``simulate`` writes a log served by a policy in the synthetic artwork world (``log.parquet``)
with the world's arm layout (``featurizer.npz``). ``evaluate`` trains the candidate policies on a
random half of a log and prints every estimator's value, interval and effective sample size for
each on the other half (with ``--tracking-uri``, the registered champion as well).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_POLICIES = "uniform,epsilon_greedy,linucb,thompson,logistic"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bandits`` with ``simulate`` and ``evaluate`` to the pathways command line."""
    bandits = subparsers.add_parser("bandits", help="artwork bandit logs and off-policy evaluation")
    sub = bandits.add_subparsers(dest="bandits_command", metavar="ACTION")
    sub.required = True

    sim = sub.add_parser("simulate", help="write a simulated artwork log and its featurizer")
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--rounds", type=int, default=100_000)
    sim.add_argument("--policy", default="uniform", help="logging policy kind (default uniform)")
    sim.add_argument("--profiles", type=int, default=2000)
    sim.add_argument("--titles", type=int, default=400)
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(handler=run_simulate)

    ev = sub.add_parser("evaluate", help="compare candidate policies on a log (OPE table)")
    ev.add_argument("--logs", type=Path, required=True, help="a BanditLog Parquet file")
    ev.add_argument("--featurizer", type=Path, default=None, help="featurizer.npz (default: beside the log)")
    ev.add_argument("--policies", default=DEFAULT_POLICIES, help=f"comma-separated kinds (default {DEFAULT_POLICIES})")
    ev.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates")
    ev.add_argument("--tracking-uri", default=None, help="also evaluate the registered champion from this MLflow store")
    ev.add_argument("--name", default="artwork_policy", help="registered model name of the champion")
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(handler=run_evaluate)


def run_simulate(args: argparse.Namespace) -> int:
    from bandits.policies import make_policy
    from bandits.simulate import make_world, simulate_log

    if args.rounds < 1:
        raise ValueError("--rounds: must be >= 1")
    world = make_world(n_profiles=args.profiles, n_titles=args.titles, seed=args.seed)
    policy = make_policy(args.policy, world.featurizer)
    if args.policy != "uniform":  # a learning logger starts from a uniform warm-up
        policy.fit(simulate_log(world, make_policy("uniform", world.featurizer), 10_000, seed=args.seed + 1))
    log = simulate_log(world, policy, args.rounds, seed=args.seed + 2, version=f"{args.policy}-sim")
    args.out.mkdir(parents=True, exist_ok=True)
    log.write_parquet(args.out / "log.parquet")
    world.featurizer.save(args.out / "featurizer.npz")
    print(f"wrote {len(log)} rounds (mean reward {log.reward.mean():.4f}) to {args.out / 'log.parquet'}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from bandits.estimators import BootstrapConfig
    from bandits.evaluate import evaluate_policies, format_table, split_halves, train_candidates
    from bandits.features import ArmFeaturizer
    from bandits.log import BanditLog

    if not args.logs.is_file():
        raise FileNotFoundError(f"log file not found: {args.logs}")
    fz_path = args.featurizer or args.logs.parent / "featurizer.npz"
    if not fz_path.is_file():
        raise FileNotFoundError(f"featurizer not found: {fz_path} (pass --featurizer)")
    log = BanditLog.read_parquet(args.logs)
    featurizer = ArmFeaturizer.load(fz_path)
    train, test = split_halves(log, args.seed)
    kinds = [k.strip() for k in args.policies.split(",") if k.strip()]
    policies = train_candidates(train, featurizer, kinds)
    if args.tracking_uri:
        import mlflow

        from bandits.artifact import download_policy

        mlflow.set_tracking_uri(args.tracking_uri)
        mlflow.set_registry_uri(args.tracking_uri)
        champion, version = download_policy(f"models:/{args.name}@champion")
        assert champion.featurizer is not None  # a downloaded policy always has its featurizer
        if champion.featurizer.context_names != featurizer.context_names:
            raise ValueError("champion: trained on another context layout than this log's featurizer")
        champion.featurizer = featurizer
        policies[f"champion:{version}"] = champion
    rows = evaluate_policies(test, policies, featurizer, BootstrapConfig(args.bootstrap, seed=args.seed))
    print(f"{len(train)} rounds to train, {len(test)} to evaluate; logged mean reward {test.reward.mean():.5f}")
    print(format_table(rows))
    return 0
