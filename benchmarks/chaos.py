"""Chaos at scale: consumer SIGKILLs, broker and Triton restarts, hostile records; then the stream audit.

Self-contained: its own stack (SeaweedFS + Tansu + Triton serving a tiny stand-in model) on free ports in a temp
dir (removed after a clean run, kept and named in the JSON otherwise). The run itself is
``tagwatch.moderation.chaos.run_chaos``. Prints ONE JSON line; exits 1 if anything was lost, a ledger record
differs from its post's first decision event, a commit passed an undecided record, or the run timed out.

    .venv/bin/python benchmarks/chaos.py                      # 20,000 posts, 10 kills, 2 + 2 restarts
    .venv/bin/python benchmarks/chaos.py --posts 300 --consumer-kills 2 --broker-restarts 1 --triton-restarts 1
    .venv/bin/python benchmarks/chaos.py --soak               # 100,000 posts: is the consumer RSS flat?
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tagwatch.moderation.chaos import ChaosConfig, run_chaos

SOAK_POSTS = 100_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=None, help="default 20000 (100000 with --soak)")
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--consumer-kills", type=int, default=10)
    parser.add_argument("--broker-restarts", type=int, default=2)
    parser.add_argument("--triton-restarts", type=int, default=2)
    parser.add_argument("--hostile-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=None, help="posts/s (default posts/120, within 10..200)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max-wall-s", type=float, default=1800.0)
    parser.add_argument("--stall-s", type=float, default=120.0,
                        help="after publishing and chaos, stop waiting when nothing new is handled for this long")
    parser.add_argument("--soak", action="store_true", help="the RSS-flat variant (100,000 posts unless --posts)")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep the stack, data and logs here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    posts = args.posts or (SOAK_POSTS if args.soak else 20_000)
    config = ChaosConfig(posts=posts, consumers=args.consumers, consumer_kills=args.consumer_kills,
                         broker_restarts=args.broker_restarts, triton_restarts=args.triton_restarts,
                         hostile_rate=args.hostile_rate, seed=args.seed, rate=args.rate, partitions=args.partitions,
                         max_wall_s=args.max_wall_s, stall_s=args.stall_s, state_dir=args.state_dir)
    result = run_chaos(config, report=lambda msg: print(msg, file=sys.stderr, flush=True))
    result["soak"] = args.soak
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
