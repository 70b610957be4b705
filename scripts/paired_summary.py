#!/usr/bin/env python3
"""Medians and per-pair new/old ratios of scripts/paired-bench.sh results."""
import json, statistics, sys
from pathlib import Path

rows = [json.loads(l) for l in Path(sys.argv[1], "results.jsonl").read_text().splitlines() if l.strip()]
def fig(r):
    if r["sc"] == "fanout":
        return r["steps"][0]["deliveries_per_server_cpu_s"]
    return r.get("rss_per_conn_bytes")
for sc, name in (("fanout", "deliveries per server CPU-s"), ("idle", "RSS bytes per idle connection")):
    by = {}
    for r in rows:
        if r["sc"] == sc and fig(r) is not None:
            by.setdefault(r["pair"], {})[r["label"]] = (fig(r), r["load1"])
    pairs = sorted(p for p in by if {"old", "new"} <= set(by[p]))
    if not pairs:
        continue
    old = [by[p]["old"][0] for p in pairs]
    new = [by[p]["new"][0] for p in pairs]
    ratios = [by[p]["new"][0] / by[p]["old"][0] for p in pairs]
    loads = [v[1] for p in pairs for v in by[p].values()]
    print(f"{sc}: {name}, {len(pairs)} pairs")
    print(f"  old median {statistics.median(old):,.0f}  [{min(old):,.0f}..{max(old):,.0f}]")
    print(f"  new median {statistics.median(new):,.0f}  [{min(new):,.0f}..{max(new):,.0f}]")
    print("  new/old per pair: " + ", ".join(f"{x:.3f}" for x in ratios))
    print(f"  median of per-pair ratios {statistics.median(ratios):.3f}; load1 during runs {min(loads):.1f}..{max(loads):.1f}")
