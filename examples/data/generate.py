#!/usr/bin/env python3
"""Generate examples/data/usage.om: one week of synthetic cAdvisor usage.

examples/data/usage.om is a link to nemutator-metrics/data/usage.om, the
sample that nemutator-metrics embeds as the default metrics source.

Deterministic (fixed seed), in the OpenMetrics format that
`promtool tsdb create-blocks-from openmetrics` accepts (timestamps in seconds,
ends with `# EOF`). Usage follows a daily and weekly rhythm (busy on weekday
afternoons), so the same file also feeds the season model.

    python3 examples/data/generate.py [--days 7] [--step 900] [--end 1764547200] > examples/data/usage.om

The sample also holds kube-state-metrics' kube_pod_container_resource_requests
(every 6 hours): the current requests `nemutator recommend --output html` draws.

With --namespaces N it writes a synthetic cluster instead: N namespaces of
--workloads Deployments (two ReplicaSet generations, --pods pods each), plus a
StatefulSet, a DaemonSet, a CronJob and a bare pod per namespace, each with
--containers containers; one container per namespace is OOM-killed
(kube_pod_container_status_last_terminated_reason). Samples are --step apart,
--offset seconds past the step (as real scrapes are). With --out-dir the
history is split into one file per 2-hour block (what promtool backfills in
one pass each) instead of going to stdout. With --throttling the cluster also
has cAdvisor's CFS counters, container_cpu_cfs_periods_total and
container_cpu_cfs_throttled_periods_total, for every container with a CPU
limit (all but the bare pod's): about 2% of periods throttled, except the
first container of the newest first pod of svc0000 in each namespace, which is
throttled in 40-70% of its periods (a noisy neighbour against its limit).
The other series are the same with or without it:

    python3 examples/data/generate.py --namespaces 20 --workloads 100 --pods 1 --containers 2 \
        --step 60 --days 7 --out-dir /tmp/usage   # 2,000 Deployments x 2 containers
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
ap.add_argument("--namespaces", type=int, default=0, help="if > 0, a synthetic cluster (see above)")
ap.add_argument("--workloads", type=int, default=3, help="Deployments per namespace")
ap.add_argument("--pods", type=int, default=2, help="pods per ReplicaSet generation")
ap.add_argument("--offset", type=int, default=0, help="seconds past each step")
ap.add_argument("--out-dir", default="", help="one file per 2-hour block in this directory")
ap.add_argument("--throttling", action="store_true",
                help="cluster: also cAdvisor's CFS period counters, one container throttled per namespace")
ap.add_argument("--only-deployments", action="store_true",
                help="no StatefulSet, DaemonSet, CronJob, bare pod nor OOM kill (benchmarks)")
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


SAFE = "bcdfghjklmnpqrstvwxz2456789"


def cluster():
    """A synthetic cluster: (namespace, pod, container, cpu, mem, t0, t1, oom) rows,
    and per row its CFS throttling: None (no CPU limit) or the throttled
    fraction of its periods at the peak."""
    mi = 1 << 20
    name = random.Random(7)

    def suffix(n):
        return "".join(name.choice(SAFE) for _ in range(n))

    rows, throttling = [], []
    mid = start + (args.days * 86400) // 2
    for n in range(args.namespaces):
        ns = f"team-{n:02d}"
        containers = ["app", "sidecar", "worker", "proxy"][: max(1, args.containers)]
        pods = []
        for w in range(args.workloads):
            for t0, t1 in [(start, mid), (mid, args.end)]:
                rs = suffix(9 if w % 2 else 10)
                pods += [(f"svc{w:04d}-{rs}-{suffix(5)}", t0, t1, w) for _ in range(args.pods)]
        if not args.only_deployments:
            pods += [(f"db-{i}", start, args.end, "db") for i in range(2)]
            pods += [(f"agent-{suffix(5)}", start, args.end, "agent") for _ in range(2)]
            pods += [(f"backup-2924{d:04d}-{suffix(5)}", start + d * 86400, start + d * 86400 + 3 * 3600, "backup")
                     for d in range(args.days)]
            pods.append(("debug", start, args.end, "debug"))
        for pod, t0, t1, w in pods:
            seed = random.Random(f"{n}-{w}").random()
            for i, c in enumerate(containers):
                oom = w == 0 and i == 0 and pod == pods[0][0] and not args.only_deployments
                rows.append((ns, pod, c, 0.05 + 0.5 * seed / (i + 1), (100 + 400 * seed) * mi / (i + 1), t0, t1, oom))
                # The first pod of svc0000's second generation lives to the end.
                hot = w == 0 and i == 0 and pod == pods[args.pods][0]
                throttling.append(None if pod == "debug" else 0.7 if hot else 0.02)
    return rows, throttling


# (namespace, pod, container, cpu cores at peak, memory bytes base, first t, last t)
series = []
MI = 1 << 20
if args.namespaces > 0:
    pass
elif args.containers > 0:
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

if args.namespaces > 0:
    import os
    rows, throttling = cluster()
    # Its own generator: the other series do not change with --throttling.
    cfs_rng = random.Random(1)
    times = list(range(start + args.offset, args.end + 1, args.step))
    block = 7200
    cpu_head = ["# HELP container_cpu_usage_seconds Cumulative cpu time consumed.",
                "# TYPE container_cpu_usage_seconds counter",
                "# UNIT container_cpu_usage_seconds seconds"]
    mem_head = ["# HELP container_memory_working_set_bytes Current working set in bytes.",
                "# TYPE container_memory_working_set_bytes gauge",
                "# UNIT container_memory_working_set_bytes bytes"]
    periods_head = ["# HELP container_cpu_cfs_periods Number of elapsed enforcement period intervals.",
                    "# TYPE container_cpu_cfs_periods counter"]
    throttled_head = ["# HELP container_cpu_cfs_throttled_periods Number of throttled period intervals.",
                      "# TYPE container_cpu_cfs_throttled_periods counter"]
    oom_head = ["# HELP kube_pod_container_status_last_terminated_reason Describes the last reason the container was in terminated state.",
                "# TYPE kube_pod_container_status_last_terminated_reason gauge"]
    # Per-series state carried from one block to the next.
    totals = [rng.uniform(100, 1000) for _ in rows]
    periods = [[0, 0] for _ in rows]
    labels = [f'{{namespace="{ns}",pod="{pod}",container="{c}"}}' for ns, pod, c, *_ in rows]
    chunks = [(t, t + block) for t in range(start - start % block, args.end + 1, block)] if args.out_dir else [(start, args.end + 1)]
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
    prev = [None] * len(rows)
    for c0, c1 in chunks:
        ts = [t for t in times if c0 <= t < c1]
        if not ts:
            continue
        loads = [rhythm(t) for t in ts]
        cpu, mem, oom = list(cpu_head), list(mem_head), list(oom_head)
        nr, thr = list(periods_head), list(throttled_head)
        for k, (ns, pod, c, peak, base, t0, t1, killed) in enumerate(rows):
            lab = labels[k]
            total = totals[k]
            for t, load in zip(ts, loads):
                if t < t0 or t > t1:
                    continue
                if prev[k] is not None:
                    total += max(0.0, peak * load * rng.uniform(0.85, 1.15)) * (t - prev[k])
                    if args.throttling and throttling[k] is not None:
                        # 100 ms periods while runnable (most of the time).
                        n = int(10 * (t - prev[k]) * cfs_rng.uniform(0.8, 1.0))
                        frac = throttling[k] * (0.6 + 0.4 * load) if throttling[k] > 0.5 else throttling[k] * cfs_rng.uniform(0.5, 1.5)
                        periods[k][0] += n
                        periods[k][1] += int(n * frac)
                if args.throttling and throttling[k] is not None:
                    nr.append(f"container_cpu_cfs_periods_total{lab} {periods[k][0]} {t}")
                    thr.append(f"container_cpu_cfs_throttled_periods_total{lab} {periods[k][1]} {t}")
                prev[k] = t
                cpu.append(f"container_cpu_usage_seconds_total{lab} {total:.3f} {t}")
                mem.append(f"container_memory_working_set_bytes{lab} {base * (0.8 + 0.2 * load) * rng.uniform(0.97, 1.03):.0f} {t}")
                if killed:
                    oom.append(f'kube_pod_container_status_last_terminated_reason{{namespace="{ns}",pod="{pod}",container="{c}",reason="OOMKilled"}} 1 {t}')
            totals[k] = total
        cfs = nr + thr if args.throttling else []
        text = "\n".join(cpu + mem + cfs + (oom if len(oom) > 2 else []) + ["# EOF"]) + "\n"
        if args.out_dir:
            with open(os.path.join(args.out_dir, f"usage-{c0}.om"), "w") as f:
                f.write(text)
        else:
            import sys
            sys.stdout.write(text)
    raise SystemExit(0)

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
# kube-state-metrics' requests of each container, every 6 hours while its pod lives
# (a small sample; kube-state-metrics is scraped as often as cAdvisor):
# what the pods ask today (generously sized, as before right-sizing).
REQUESTS = {"app": (0.5, 1024 * MI), "envoy": (0.1, 128 * MI), "postgres": (2.0, 4096 * MI),
            "agent": (0.05, 128 * MI), "api": (1.0, 512 * MI), "coredns": (0.1, 70 * MI)}
out += ["# HELP kube_pod_container_resource_requests The number of requested request resource by a container.",
        "# TYPE kube_pod_container_resource_requests gauge"]
for resource, unit, i in [("cpu", "core", 0), ("memory", "byte", 1)]:
    for ns, pod, container, cpu, mem, t0, t1 in series:
        value = f"{REQUESTS[container][i]:g}" if resource == "cpu" else str(int(REQUESTS[container][i]))
        labels = (f'{{namespace="{ns}",pod="{pod}",container="{container}",'
                  f'resource="{resource}",unit="{unit}"}}')
        for t in times:
            if t0 <= t <= t1 and (t - start) % 21600 == 0:
                out.append(f"kube_pod_container_resource_requests{labels} {value} {t}")
out.append("# EOF")
print("\n".join(out))
