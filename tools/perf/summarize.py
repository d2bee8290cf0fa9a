#!/usr/bin/env python3
"""Summarises the runs of tools/perf/compare.sh (one JSON object per line from
knooppunt-perf-loadgen): per setup, payload size and concurrency the median over rounds of
requests/s, p50/p99/p99.9 latency and CPU seconds per 1,000 requests (gateway or proxy plus
endpoint), the peak RSS, the ratios Knooppunt/nginx, Knooppunt/HAProxy, Knooppunt/direct, and
whether the targets of issue 7 hold. Prints a table, then the same as one JSON document (also
written to --json=FILE). Standard library only.

    summarize.py RUNS.jsonl [--json=FILE]
"""
import json
import statistics
import sys

ORDER = ["direct", "knooppunt", "knooppunt-filter", "nginx", "haproxy"]


def median(values):
    return statistics.median(values) if values else None


def load(path):
    runs, idle = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            (idle if record.get("mode") == "idle" else runs).append(record)
    return runs, idle


def summarise(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["label"], r["request_bytes"], r["concurrency"]), []).append(r)
    rows = []
    for (label, size, conc), rs in groups.items():
        rows.append({
            "setup": label, "bytes": size, "concurrency": conc, "rounds": len(rs),
            "rps": median([r["rps"] for r in rs]),
            "p50_us": median([r["p50_us"] for r in rs]),
            "p99_us": median([r["p99_us"] for r in rs]),
            "p999_us": median([r["p999_us"] for r in rs]),
            "cpu_s_per_1k": median([r["proxy_cpu_s_per_1k"] + r["endpoint_cpu_s_per_1k"] for r in rs]),
            "proxy_cpu_s_per_1k": median([r["proxy_cpu_s_per_1k"] for r in rs]),
            "loadgen_cpu_s_per_1k": median([r["loadgen_cpu_s_per_1k"] for r in rs]),
            "peak_rss_mib": max(r["proxy_hwm_mib"] if r["proxy_hwm_mib"] > 0 else r["endpoint_hwm_mib"]
                                for r in rs),
        })
    key = lambda row: (row["bytes"], row["concurrency"],
                       ORDER.index(row["setup"]) if row["setup"] in ORDER else 99)
    return sorted(rows, key=key)


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def compare(rows):
    by = {(r["setup"], r["bytes"], r["concurrency"]): r for r in rows}
    ratios, targets = [], []
    for size, conc in sorted({(r["bytes"], r["concurrency"]) for r in rows}):
        def get(setup):
            return by.get((setup, size, conc))
        direct = get("direct")
        for k in ("knooppunt", "knooppunt-filter"):
            kn = get(k)
            if not kn:
                continue
            entry = {"setup": k, "bytes": size, "concurrency": conc}
            for other in ("nginx", "haproxy", "direct"):
                o = get(other)
                if o:
                    entry[f"rps_vs_{other}"] = ratio(kn["rps"], o["rps"])
                    entry[f"p99_vs_{other}"] = ratio(kn["p99_us"], o["p99_us"])
                    entry[f"cpu_vs_{other}"] = ratio(kn["cpu_s_per_1k"], o["cpu_s_per_1k"])
            ratios.append(entry)
            if k != "knooppunt":
                continue  # the targets are for agreements + audit on, filtering off
            hap, ngx = get("haproxy"), get("nginx")
            if conc >= 64 and hap:
                targets.append({
                    "target": f"c={conc} {size} B: throughput >= HAProxy",
                    "met": kn["rps"] >= hap["rps"],
                    "detail": f"{kn['rps']:.0f} vs {hap['rps']:.0f} req/s ({ratio(kn['rps'], hap['rps'])}x)"})
                targets.append({
                    "target": f"c={conc} {size} B: p99 <= HAProxy",
                    "met": kn["p99_us"] <= hap["p99_us"],
                    "detail": f"{kn['p99_us']:.0f} vs {hap['p99_us']:.0f} us"})
            if conc >= 64 and ngx:
                targets.append({
                    "target": f"c={conc} {size} B: throughput well above nginx (>= 1.2x)",
                    "met": kn["rps"] >= 1.2 * ngx["rps"],
                    "detail": f"{kn['rps']:.0f} vs {ngx['rps']:.0f} req/s ({ratio(kn['rps'], ngx['rps'])}x)"})
            if conc == 1 and hap and direct:
                added_kn = kn["p50_us"] - direct["p50_us"]
                added_hap = hap["p50_us"] - direct["p50_us"]
                targets.append({
                    "target": f"c=1 {size} B: added p50 latency over direct <= HAProxy's",
                    "met": added_kn <= added_hap,
                    "detail": f"+{added_kn:.0f} us vs +{added_hap:.0f} us"})
    return ratios, targets


def main(argv):
    paths = [a for a in argv[1:] if not a.startswith("--")]
    json_path = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--json=")), None)
    if len(paths) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    runs, idle = load(paths[0])
    rows = summarise(runs)
    ratios, targets = compare(rows)
    for i in idle:
        held = i["ready"] == i["connections"] and i["still_ready"] == i["connections"]
        targets.append({
            "target": f"{i['connections']} idle mTLS connections held, gateway RSS < 1 GiB"
                      + ("" if i["connections"] >= 10000 else " (the target is for 10,000: n/a)"),
            "met": (held and i["proxy_rss_mib"] < 1024) if i["connections"] >= 10000 else None,
            "detail": f"{i['still_ready']}/{i['connections']} ready, RSS {i['proxy_rss_mib']:.0f} MiB "
                      f"(before {i['proxy_rss_before_mib']:.0f} MiB), opened in {i['open_seconds']:.0f} s"})

    header = (f"{'setup':<17}{'bytes':>6}{'conc':>5}{'req/s':>9}{'p50 us':>9}{'p99 us':>9}"
              f"{'p99.9 us':>10}{'cpu s/1k':>10}{'of which mid':>13}{'peak RSS MiB':>13}")
    print(header)
    print("-" * len(header))
    last = None
    for r in rows:
        if last and (r["bytes"], r["concurrency"]) != last:
            print()
        last = (r["bytes"], r["concurrency"])
        print(f"{r['setup']:<17}{r['bytes']:>6}{r['concurrency']:>5}{r['rps']:>9.0f}{r['p50_us']:>9.0f}"
              f"{r['p99_us']:>9.0f}{r['p999_us']:>10.0f}{r['cpu_s_per_1k']:>10.4f}"
              f"{r['proxy_cpu_s_per_1k']:>13.4f}{r['peak_rss_mib']:>13.1f}")
    if ratios:
        print("\nratios (req/s, p99, cpu per request; >1 means Knooppunt has more):")
        for e in ratios:
            parts = [f"{k}={v}" for k, v in e.items() if k.startswith(("rps_", "p99_", "cpu_"))]
            print(f"  {e['setup']:<17}{e['bytes']:>6}{e['concurrency']:>5}  " + "  ".join(parts))
    if targets:
        print("\ntargets:")
        for t in targets:
            verdict = "n/a" if t["met"] is None else "met" if t["met"] else "NOT met"
            print(f"  [{verdict}] {t['target']}: {t['detail']}")
    document = {"summary": rows, "ratios": ratios, "targets": targets, "idle": idle, "runs": runs}
    print("\nJSON:")
    print(json.dumps({k: document[k] for k in ("summary", "ratios", "targets", "idle")}))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(document, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
