"""Top lists of many teams in one call, on one Redis and on a Redis Cluster: what the per-slot writes cost.

    .venv/bin/python -m bench.redis_cluster_bench [--teams 1000] [--runs 5]

Starts its own servers (the stack's code, in a temporary folder, on free ports): one redis-server, and six in
cluster mode formed into three masters with a replica each (`tenderhub stack up --cluster`'s Redis). Each run reads
every team's list with its inputs (`ZsetCas.read`: one transaction on one Redis, one pipeline on a cluster) and
replaces them all (`replace_if_unchanged`: one script on one Redis, one per slot on a cluster, 16 in flight), as the
readiness agent does for a new tender. Prints the times in ms; figures in bench/README.md. Needs no other service.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.args import positive
from schema.redis_keys import TEAM_TOP_TENDERS
from schema.settings import load_stack_settings
from sinks.redis import RedisSink
from sinks.redis_versioned import ListChange, ZsetCas
from tenderhub.stack import Redis, Stack, free_port_block, start_redis_servers

NODES = 6


async def timings(url: str, cluster: bool, teams: int, runs: int) -> list[tuple[float, float]]:
    sink = RedisSink(url, key_prefix="bench:", cluster=cluster)
    cas = ZsetCas(sink, 3600, inputs_suffix=":inputs")
    keys = [TEAM_TOP_TENDERS.key(id=t) for t in range(1, teams + 1)]
    out = []
    try:
        for run in range(runs):
            start = time.perf_counter()
            current = await cas.read(keys)
            read = time.perf_counter()
            changes = {
                k: ListChange(current[k], {str(run + 1): float(n)}, {"team_seq": run * 1_000_000 + n})
                for n, k in enumerate(keys, 1)
            }
            conflicts = await cas.replace_if_unchanged(changes)
            done = time.perf_counter()
            if conflicts:
                raise SystemExit(f"{len(conflicts)} lists refused: the bench's keys were not its own")
            out.append(((read - start) * 1000, (done - read) * 1000))
    finally:
        await sink.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=positive, default=1000)
    parser.add_argument("--runs", type=positive, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenderhub-redis-bench-") as tmp:
        base = free_port_block([100 * n + bus for n in range(NODES + 1) for bus in (0, 10_000)], high=30_000)
        single = Stack(load_stack_settings(stack_dir=Path(tmp) / "single", redis_port=base + 100 * NODES))
        cluster = Stack(load_stack_settings(stack_dir=Path(tmp) / "cluster", redis_nodes=NODES, redis_port=base))
        servers = [s for stack in (single, cluster) for s in stack.services if isinstance(s, Redis)]
        try:
            for stack in (single, cluster):
                start_redis_servers(stack, 60)
            for name, stack, is_cluster in (("one Redis", single, False), ("Redis Cluster, 3 masters", cluster, True)):
                got = asyncio.run(timings(stack.redis_url(), is_cluster, args.teams, args.runs))
                reads = ", ".join(f"{r:.0f}" for r, _ in got)
                writes = ", ".join(f"{w:.0f}" for _, w in got)
                print(f"{name}: {args.teams} teams' lists read in [{reads}] ms, replaced in [{writes}] ms")
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
