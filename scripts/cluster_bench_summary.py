#!/usr/bin/env python3
"""Medians over the runs that scripts/cluster-bench.sh wrote to OUT/*.jsonl.

Usage: python3 scripts/cluster_bench_summary.py OUT
Prints one line per measured figure: median [min..max] over the runs.
"""
import sys
from pathlib import Path

from bench_stats import get, load_jsonl, median, present


def load(out, name):
    return load_jsonl(Path(out) / f"{name}.jsonl")


def line(label, runs, path, unit="", fmt="{:.2f}"):
    vals = present(get(r, path) for r in runs)
    if not vals:
        return
    med = median(vals)
    print(f"{label:<44} {fmt.format(med)}{unit}  [{fmt.format(min(vals))}..{fmt.format(max(vals))}] n={len(vals)}")
    return med


def ratio(label, a, b):
    if a and b:
        print(f"{label:<44} x{a / b:.2f}")


def main():
    out = sys.argv[1]
    med = {}
    print("== latency: all clients on one node")
    for topo in ("single", "r1", "r3"):
        j = load(out, f"latency-join-{topo}")
        s = load(out, f"latency-send-{topo}")
        for key, path in (("join-room", "join_room_latency"), ("joinRoom", "joinroom_latency")):
            for q in ("p50", "p99"):
                med[(topo, key, q)] = line(f"{topo:<6} {key} {q}", j, f"{path}.{q}_ms", " ms")
        for q in ("p50", "p99"):
            med[(topo, "send", q)] = line(f"{topo:<6} sendMessage {q}", s, f"steps.0.send_latency.{q}_ms", " ms")
            med[(topo, "e2e", q)] = line(f"{topo:<6} message end-to-end {q}", s, f"steps.0.e2e.{q}_ms", " ms")
    for topo in ("r1", "r3"):
        for key in ("join-room", "joinRoom", "send"):
            for q in ("p50", "p99"):
                ratio(f"ratio {topo}/single {key} {q}", med.get((topo, key, q)), med.get(("single", key, q)))

    print("== cross-node events (r3, 10 rooms x 10 members, 100 msgs/s)")
    for where in ("single", "same", "cross"):
        runs = load(out, f"xnode-{where}")
        for q in ("p50", "p99"):
            med[(where, q)] = line(f"{where:<6} end-to-end {q}", runs, f"steps.0.e2e.{q}_ms", " ms")
        line(f"{where:<6} delivered/expected", runs, "steps.0.delivered", "", "{:.0f}")
    for q in ("p50", "p99"):
        ratio(f"ratio cross/same {q}", med.get(("cross", q)), med.get(("same", q)))
        ratio(f"ratio cross/single {q}", med.get(("cross", q)), med.get(("single", q)))

    print("== per CPU-second (roomd CPU summed over nodes; NATS apart)")
    for topo in ("single", "r3"):
        j = load(out, f"percpu-join-{topo}")
        f = load(out, f"percpu-fanout-{topo}")
        med[(topo, "jcpu")] = line(f"{topo:<6} joins per roomd CPU-s", j, "joins_per_server_cpu_s", "", "{:.0f}")
        line(f"{topo:<6} joins roomd CPU s", j, "joins.server_cpu_s")
        line(f"{topo:<6} joins NATS CPU s", j, "joins.aux_cpu_s")
        line(f"{topo:<6} joins wall s", j, "joins.wall_s")
        line(f"{topo:<6} joins/s wall", j, "joins_per_s", "", "{:.0f}")
        line(f"{topo:<6} join p50", j, "join_latency.p50_ms", " ms")
        line(f"{topo:<6} join p99", j, "join_latency.p99_ms", " ms")
        med[(topo, "fcpu")] = line(
            f"{topo:<6} deliveries per roomd CPU-s", f, "steps.0.deliveries_per_server_cpu_s", "", "{:.0f}"
        )
        line(f"{topo:<6} fanout roomd CPU s", f, "steps.0.usage.server_cpu_s")
        line(f"{topo:<6} fanout NATS CPU s", f, "steps.0.usage.aux_cpu_s")
        line(f"{topo:<6} fanout wall s", f, "steps.0.usage.wall_s")
        line(f"{topo:<6} fanout e2e p50", f, "steps.0.e2e.p50_ms", " ms")
        line(f"{topo:<6} fanout e2e p99", f, "steps.0.e2e.p99_ms", " ms")
    ratio("ratio r3/single joins per roomd CPU-s", med.get(("r3", "jcpu")), med.get(("single", "jcpu")))
    ratio("ratio r3/single deliveries per roomd CPU-s", med.get(("r3", "fcpu")), med.get(("single", "fcpu")))

    print("== failover (r3, kill -9 node 1)")
    runs = load(out, "failover")
    line("clients recovered", runs, "recovered", "", "{:.0f}")
    for q in ("p50", "p99", "max"):
        line(f"kill -> first ok {q}", runs, f"kill_to_ok.{q}_ms", " ms")
    line("sendMessage p50 before kill", runs, "send_before.p50_ms", " ms")
    line("sendMessage p50 after recovery", runs, "send_after.p50_ms", " ms")


if __name__ == "__main__":
    main()
