"""What the benchmark summaries share: reading loadgen's JSON lines and
taking medians. Imported by scripts/bench_summary.py and
scripts/cluster_bench_summary.py (Python puts a script's own directory on
the import path, so no install is needed)."""
import json
import statistics
from pathlib import Path


def load_jsonl(path):
    """The JSON objects of a loadgen output file, one a line; lines that are
    not JSON objects (progress text, a run cut off mid-line) are skipped.
    A missing file has none."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def get(d, path):
    """`d["a"]["b"][0]…` for the dotted path `a.b.0…`; `None` where it stops."""
    for k in path.split("."):
        if d is None:
            return None
        d = d[int(k)] if isinstance(d, list) else d.get(k)
    return d


def present(values):
    """The values that were measured (not `None`)."""
    return [v for v in values if v is not None]


def median(values):
    """The median of the measured values, or `None` if there are none."""
    values = present(values)
    return statistics.median(values) if values else None
