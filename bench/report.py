#!/usr/bin/python3
"""Turns bench/run.sh's results.tsv (scenario, metric, server, round, value)
into tables of medians, the tpops/Dovecot ratios and the targets of issues
7 (plaintext) and 17 (TLS).

  report.py RESULTS.tsv [NOTE...]
"""
import statistics
import sys
from collections import defaultdict

SERVERS = ["tpops", "tpops-maildir", "tpops-mysql", "dovecot-fast", "dovecot-stock", "loopback", "loopback-rr",
           "tpops-metrics-off", "tpops-metrics-on"]
TPOPS = ["tpops", "tpops-maildir", "tpops-mysql"]
ORDER = ["sessions", "retr", "idle", "maildir", "deliver", "rss", "metrics",
         "tls-sessions", "tls-retr", "tls-storm", "lmtp"]
NOT_SHOWN = ("other_load_pct", "loadavg_1min")
TITLES = {
    "sessions": "(1) full sessions: USER PASS STAT LIST UIDL QUIT (10 messages)",
    "retr": "(2) RETR throughput, MB/s (10^6 octets/s); loopback: a plain TCP sender "
            "of the same bytes, loopback-rr: the same with one request per message",
    "idle": "(3) idle authenticated sessions: total PSS (MiB), sessions still served",
    "maildir": "(4) 100,000-message Maildir: ms from connect to the end of STAT / UIDL",
    "deliver": "(5) deliveries per second (tpops-store vs dovecot-lda), one process per message",
    "rss": "(6) RETR of a 100 MiB message: RSS growth of the server (MiB), MB/s",
    "metrics": "(7) sessions per second (plaintext) and the daemon's CPU microseconds per "
               "session, with the counters off and on (ControlSocket and MetricsListen, "
               "scraped every second)",
    "tls-sessions": "(8) TLS sessions/s (POP3S, STLS; ECDSA P-256, RSA-2048), full handshakes "
                    "and resumed (_resume: each client offers its last ticket)",
    "tls-retr": "(9) RETR over TLS, MB/s: 10 MiB LF / CRLF and 1000 x 100 KiB (half LF, half "
                "CRLF), 1 and 8 connections",
    "tls-storm": "(10) RETR of 4 POP3S connections, MB/s, alone and while 64 others do full "
                 "handshakes",
    "lmtp": "(11) deliveries per second: the pipe (a tpops-store / dovecot-lda process per "
            "message) and LMTP (connections kept open, pipelined transactions)",
}


def tls_target(metric, med, tp):
    """(text, verdict) of issue 17 for a TLS metric; med maps (metric,
    server) to the median, since some targets compare two metrics."""
    t = med.get((metric, tp))
    f = med.get((metric, "dovecot-fast"))

    def verdict(ok):
        return "MET" if ok else "MISSED"

    if t is None:
        return "", ""
    if metric.startswith("rate_") and "_resume_" in metric:
        full = med.get((metric.replace("_resume", ""), tp))
        return ">= 2 x own full handshakes", verdict(full and t >= 2 * full)
    if metric.startswith("rate_") and not metric.endswith("_c1"):
        return ">= 3 x fast", verdict(f and t >= 3 * f)
    if metric.startswith("mbps_k4_storm_"):
        alone = med.get((metric.replace("_storm_", "_alone_"), tp))
        return ">= 70% of alone", verdict(alone and t >= 0.7 * alone)
    if metric.startswith("mbps_") and metric.endswith("_k8") and "_k4_" not in metric:
        one = med.get((metric[:-1] + "1", tp))
        return ">= 4 x fast, >= k1", verdict(f and t >= 4 * f and one and t >= one)
    if metric.startswith("mbps_") and metric.endswith("_k1"):
        return ">= 4 x fast", verdict(f and t >= 4 * f)
    return "", ""


def target(metric, med, tp="tpops"):
    """(text, verdict) for a metric, from the medians by server, for the
    tpops variant tp."""
    t, f = med.get(tp), med.get("dovecot-fast")
    lo = med.get("loopback")

    def ratio_ok(r):
        return "MET" if r else "MISSED"

    if metric.startswith("rate_") and "tpops-metrics-off" in med:
        off, on = med.get("tpops-metrics-off"), med.get("tpops-metrics-on")
        return "on >= 98% of off (issue 15)", ratio_ok(off and on is not None and on >= 0.98 * off)
    if metric.startswith("cpu_us_") and "tpops-metrics-off" in med:
        off, on = med.get("tpops-metrics-off"), med.get("tpops-metrics-on")
        return "on <= 102% of off", ratio_ok(off and on is not None and on <= 1.02 * off)
    if t is None:
        return "", ""
    if metric.startswith("rate_plain_c") and metric not in ("rate_plain_c1",):
        return ">= 3 x fast", ratio_ok(f and t >= 3 * f)
    if metric.startswith("rate_sha512_c") and metric != "rate_sha512_c1":
        return ">= 1.2 x fast", ratio_ok(f and t >= 1.2 * f)
    if metric.startswith("p99ms_") and metric.endswith("_c64"):
        return "<= fast", ratio_ok(f is not None and t <= f)
    if metric.startswith("mbps_") and metric != "mbps_100m":
        ok = f and t >= 1.5 * f and lo and t >= 0.8 * lo
        return ">= 1.5 x fast, >= 80% of loopback", ratio_ok(ok)
    if metric == "pss_mib_10000":
        return "< 100 MiB", ratio_ok(t < 100)
    if metric == "held_10000":
        return "all 10000", ratio_ok(t >= 10000)
    if metric == "extra_ok_10000":
        return "one more served (1)", ratio_ok(t >= 1)
    if metric == "stat_ms_second":
        return "< 50 ms", ratio_ok(t < 50)
    if metric == "uidl_ms_second":
        return "< 300 ms", ratio_ok(t < 300)
    if metric in ("stat_ms_first", "uidl_ms_first"):
        return "<= fast", ratio_ok(f is not None and t <= f)
    if metric == "rss_growth_mib":
        return "< 16 MiB", ratio_ok(t < 16)
    if metric == "deliveries_per_s":
        return ">= dovecot-lda", ratio_ok(f is not None and t >= f)
    return "", ""


def paired_row(metric, by_round, columns):
    """The metrics scenario's daemons take turns within each round, so the
    ratio of one round's two runs is free of the other load that changes
    from round to round; their median is the steadier on/off figure."""
    off = by_round.get(("metrics", metric, "tpops-metrics-off"), {})
    on = by_round.get(("metrics", metric, "tpops-metrics-on"), {})
    pairs = [on[r] / off[r] for r in off if r in on and off[r] > 0]
    if not pairs:
        return ""
    med = statistics.median(pairs)
    row = ["%s, on/off of each round (median of %d)" % (metric, len(pairs))]
    row += [""] * (columns - 4) + ["%.3f" % med, "on >= 98% of off (issue 15)",
                                   "MET" if med >= 0.98 else "MISSED"]
    return "| " + " | ".join(row) + " |"


def values_for(values, scenario, metric):
    out = []
    for (sc, m, _), v in values.items():
        if sc == scenario and m == metric:
            out += v
    return out


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return "%.2f" % (a / b)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    values = defaultdict(list)
    by_round = defaultdict(dict)  # (scenario, metric, server) -> {round: value}
    metrics = defaultdict(list)
    rounds = defaultdict(set)
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5 or parts[4] == "":
                continue
            scenario, metric, server, rnd, value = parts
            try:
                v = float(value)
            except ValueError:
                continue
            values[(scenario, metric, server)].append(v)
            by_round[(scenario, metric, server)][rnd] = v
            rounds[scenario].add(rnd)
            if metric not in metrics[scenario]:
                metrics[scenario].append(metric)
    for scenario in ORDER:
        if scenario not in metrics:
            continue
        shown = [m for m in metrics[scenario] if m not in NOT_SHOWN]
        present = [s for s in SERVERS
                   if any((scenario, m, s) in values for m in shown)]
        variants = [t for t in TPOPS if t in present]
        if scenario == "metrics":
            variants = ["tpops-metrics-on"]
        print()
        print("### %s — medians of %d round(s)" % (TITLES[scenario], len(rounds[scenario])))
        print()
        head = ["metric"] + present
        ratios = []
        for tp in variants:
            for ref in ("dovecot-fast", "dovecot-stock", "loopback", "tpops-metrics-off"):
                if ref in present:
                    ratios.append((tp, ref))
        head += ["%s/%s" % (tp.replace("tpops-", ""), ref.replace("dovecot-", ""))
                 for tp, ref in ratios]
        issue = "17" if scenario.startswith("tls-") else "7"
        head += ["target (issue %s)" % issue, "verdict"]
        allmed = {(m, s): statistics.median(values[(scenario, m, s)])
                  for m in shown for s in present if values.get((scenario, m, s))}
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for metric in shown:
            med = {}
            for s in present:
                v = values.get((scenario, metric, s))
                med[s] = statistics.median(v) if v else None
            row = [metric] + [fmt(med[s]) for s in present]
            row += [ratio(med[tp], med[ref]) for tp, ref in ratios]
            text, verdicts = "", []
            for tp in variants:
                if scenario.startswith("tls-"):
                    t_text, verdict = tls_target(metric, allmed, tp)
                else:
                    t_text, verdict = target(metric, med, tp)
                if t_text:
                    text = t_text
                    verdicts.append(verdict if len(variants) == 1
                                    else "%s %s" % (tp.replace("tpops-", "").replace("tpops", "sqlite"), verdict))
            row += [text, ", ".join(verdicts)]
            print("| " + " | ".join(row) + " |")
            if scenario == "metrics" and metric.startswith("rate_"):
                print(paired_row(metric, by_round, len(head)))
        load = values_for(values, scenario, "other_load_pct")
        if load:
            print()
            print("Other load on the machine just before each server's turn: median %.0f %%, "
                  "max %.0f %% of all CPUs." % (statistics.median(load), max(load)))
        avg = values_for(values, scenario, "loadavg_1min")
        if avg:
            print("Load average (1 min) at those moments: median %.1f, max %.1f (on %s)."
                  % (statistics.median(avg), max(avg), "this many CPUs: see nproc above"))
    for note in sys.argv[2:]:
        print()
        print(note)


if __name__ == "__main__":
    main()
