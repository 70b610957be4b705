#!/usr/bin/env python3
"""Prints medians of the loadgen JSON lines written by scripts/bench.sh."""
import sys
from pathlib import Path

from bench_stats import load_jsonl as load
from bench_stats import median as med


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = round(v, 2) if abs(v) < 100 else round(v)
    return f"{v:,}{unit}" if isinstance(v, int) else f"{v}{unit}"


def step(d):
    return d["steps"][-1] if d.get("steps") else {}


def main(out):
    out = Path(out)
    rows = []
    for f in sorted(out.glob("*.jsonl")):
        runs = load(f)
        if not runs:
            continue
        name, n = f.stem, len(runs)
        s = runs[0]["scenario"]
        if s == "idle":
            # Each run has two shard lines; the second reports over all N.
            per = [r.get("rss_per_conn_bytes") for r in runs if r.get("shard", "").startswith("2/")] or [
                r.get("rss_per_conn_bytes") for r in runs
            ]
            ok = sum(r.get("ok", 0) for r in runs)
            rows.append((name, n, f"RSS per connection {fmt(med(per), ' B')}; connections ok over all runs {ok:,}; "
                         f"setups per server CPU-s {fmt(med([r.get('setups_per_server_cpu_s') for r in runs]))}"))
        elif s == "join":
            rows.append((name, n, "connect+login per server CPU-s {}; joins/s {}; joins per server CPU-s {}; "
                         "join p50/p99 {}/{} ms; accepted {} of expected {}; verified {}".format(
                             fmt(med([r["connect_per_server_cpu_s"] for r in runs])),
                             fmt(med([r["joins_per_s"] for r in runs])),
                             fmt(med([r["joins_per_server_cpu_s"] for r in runs])),
                             fmt(med([r["join_latency"]["p50_ms"] for r in runs])),
                             fmt(med([r["join_latency"]["p99_ms"] for r in runs])),
                             runs[0]["accepted"], runs[0]["expected"], all(r["verified"] for r in runs))))
        elif s == "race":
            r = runs[0]
            rows.append((name, n, f"iterations {r['iterations']}, seats {r['seats']}, clients {r['clients']}: "
                         f"accepted min {r['min_accepted']} max {r['max_accepted']}, over-admissions {r['over_admissions']}, "
                         f"under-admissions {r['under_admissions']}"))
        elif s == "fanout" and runs[0].get("ramp"):
            r = runs[0]
            best = r.get("best_rate")
            lines = [f"best sustainable rate {fmt(best, ' msgs/s')} (stop: {r.get('stop_reason')})"]
            for st in r.get("steps", []):
                lines.append("  rate {} -> {} deliveries/s, {} per server CPU-s, e2e p50/p99 {}/{} ms".format(
                    fmt(st["rate"]), fmt(st["deliveries_per_s"]), fmt(st["deliveries_per_server_cpu_s"]),
                    fmt(st["e2e"]["p50_ms"]), fmt(st["e2e"]["p99_ms"])))
            rows.append((name, n, "\n".join(lines)))
        elif s == "fanout":
            rows.append((name, n, "{} rooms x {} members at {} msgs/s: deliveries/s {}; per server CPU-s {}; "
                         "e2e p50/p99 {}/{} ms; sendMessage p50/p99 {}/{} ms; delivered {}".format(
                             runs[0]["rooms"], runs[0]["members"], fmt(step(runs[0]).get("rate")),
                             fmt(med([step(r)["deliveries_per_s"] for r in runs])),
                             fmt(med([step(r)["deliveries_per_server_cpu_s"] for r in runs])),
                             fmt(med([step(r)["e2e"]["p50_ms"] for r in runs])),
                             fmt(med([step(r)["e2e"]["p99_ms"] for r in runs])),
                             fmt(med([step(r)["send_latency"]["p50_ms"] for r in runs])),
                             fmt(med([step(r)["send_latency"]["p99_ms"] for r in runs])),
                             "{:.2%}".format(med([step(r)["delivered"] / max(1, step(r)["expected_deliveries"]) for r in runs])))))
        elif s == "chat":
            r = runs[0]
            rss = r["rss"]
            lat = r["latency"]
            rows.append((name, n, "clients {} for {} s: ops {} ({} per server CPU-s); RSS start/max/end {}/{}/{} KiB; "
                         "p99 ms: {}".format(r["clients"], r["duration_s"], r["ops"], fmt(r["ops_per_server_cpu_s"]),
                                             rss["start_kb"], rss["max_kb"], rss["end_kb"],
                                             ", ".join(f"{k} {fmt(v.get('p99_ms'))}" for k, v in lat.items()))))
    for name, n, text in rows:
        print(f"### {name} (runs: {n})\n{text}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-results")
