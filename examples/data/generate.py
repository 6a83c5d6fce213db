#!/usr/bin/env python3
"""Generate examples/data/usage.om: one week of synthetic cAdvisor usage.

examples/data/usage.om is a link to nemutator-metrics/data/usage.om, the
sample that nemutator-metrics embeds as the default metrics source.

Deterministic (fixed seed), in the OpenMetrics format that
`promtool tsdb create-blocks-from openmetrics` accepts (timestamps in seconds,
ends with `# EOF`). Usage follows a daily and weekly rhythm (busy on weekday
afternoons), so the same file also feeds the season model.

    python3 examples/data/generate.py [--days 7] [--step 900] [--end 1764547200] > examples/data/usage.om
"""
import argparse
import math
import random

ap = argparse.ArgumentParser()
ap.add_argument("--days", type=int, default=7)
ap.add_argument("--step", type=int, default=900, help="seconds between samples")
# 2025-12-01 00:00:00 UTC, a Monday
ap.add_argument("--end", type=int, default=1764547200)
ap.add_argument("--containers", type=int, default=0,
                help="if > 0, emit this many single-container Deployments instead (load tests)")
args = ap.parse_args()
rng = random.Random(42)
start = args.end - args.days * 86400
times = list(range(start, args.end + 1, args.step))


def rhythm(t):
    """1.0 at a weekday 14:00 peak, lower at night and at weekends."""
    hour = (t % 86400) / 3600.0
    day = (t // 86400 + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    daily = 0.5 + 0.5 * math.cos((hour - 14.0) / 24.0 * 2 * math.pi)
    weekly = 1.0 if day < 5 else 0.55
    return 0.25 + 0.75 * daily * weekly


# (namespace, pod, container, cpu cores at peak, memory bytes base, first t, last t)
series = []
MI = 1 << 20
if args.containers > 0:
    for i in range(args.containers):
        series.append(("load", f"svc{i}-7d9f8b6c5d-x2k9p", "app", 0.2 + 0.01 * i, 200 * MI, start, args.end))
else:
    mid = start + (args.days * 86400) // 2
    # Deployment "web": a rollout halfway through replaces ReplicaSet 7d9f8b6c5d by 5c8d7f9b4.
    for pod, t0, t1 in [("web-7d9f8b6c5d-x2k9p", start, mid), ("web-7d9f8b6c5d-q8z4m", start, mid),
                        ("web-5c8d7f9b4-b7k2x", mid, args.end), ("web-5c8d7f9b4-w9v6t", mid, args.end)]:
        series.append(("default", pod, "app", 0.22, 520 * MI, t0, t1))
        series.append(("default", pod, "envoy", 0.04, 48 * MI, t0, t1))
    # StatefulSet "db".
    for pod in ["db-0", "db-1"]:
        series.append(("default", pod, "postgres", 0.9, 2900 * MI, start, args.end))
    # DaemonSet "node-agent".
    for pod in ["node-agent-x7z2q", "node-agent-m4r8s"]:
        series.append(("default", pod, "agent", 0.03, 90 * MI, start, args.end))
    # Deployment "api" in namespace shop.
    for pod in ["api-6b7c9d8f5-k2m4n", "api-6b7c9d8f5-p5q7r", "api-6b7c9d8f5-z9x8w"]:
        series.append(("shop", pod, "api", 0.35, 300 * MI, start, args.end))
    # Something in kube-system (never touched by the default policy).
    series.append(("kube-system", "coredns-5d78c9869d-tx2v4", "coredns", 0.05, 40 * MI, start, args.end))

out = ["# HELP container_cpu_usage_seconds Cumulative cpu time consumed.",
       "# TYPE container_cpu_usage_seconds counter",
       "# UNIT container_cpu_usage_seconds seconds"]
mem_lines = []
for ns, pod, container, cpu, mem, t0, t1 in series:
    labels = f'{{namespace="{ns}",pod="{pod}",container="{container}"}}'
    total = rng.uniform(100, 1000)
    prev = None
    for t in times:
        if t < t0 or t > t1:
            continue
        load = rhythm(t)
        if prev is not None:
            rate = max(0.0, cpu * load * rng.uniform(0.85, 1.15))
            total += rate * (t - prev)
        prev = t
        out.append(f"container_cpu_usage_seconds_total{labels} {total:.3f} {t}")
        working = mem * (0.8 + 0.2 * load) * rng.uniform(0.97, 1.03)
        mem_lines.append(f"container_memory_working_set_bytes{labels} {working:.0f} {t}")
out += ["# HELP container_memory_working_set_bytes Current working set in bytes.",
        "# TYPE container_memory_working_set_bytes gauge",
        "# UNIT container_memory_working_set_bytes bytes"]
out += mem_lines
out.append("# EOF")
print("\n".join(out))
