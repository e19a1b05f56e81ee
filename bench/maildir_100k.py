#!/usr/bin/python3
"""Benchmark: login + STAT + UIDL + LIST on a Maildir of 100,000 messages.

Two maildrops are measured, each at its first login and at later ones:
  fields   every name carries S= and W= (as tpops-store and Dovecot write)
  plain    no size fields (as Postfix's local(8) writes): the first login
           reads every file once and writes the size cache; later logins
           read the cache and no message file
Times are from connecting to the end of the PASS, STAT, UIDL and LIST
answers, as a client sees them; the daemon is the optimised build (TPOPS_BUILD, default ./build).

usage: bench/maildir_100k.py [-n MESSAGES] [-r REPEATS] [--cold]
  --cold   drop the page cache before the first login and before one more
           later login (needs root); without it every login is warm
Prints one line per measurement and a Markdown table for docs/BENCHMARKS.md.
"""
import argparse
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(os.environ.get("TPOPS_BUILD") or os.path.join(HERE, "..", "build"))
IS_ROOT = os.geteuid() == 0
RUN_USER, RUN_GROUP = ("nobody", "nogroup") if IS_ROOT else (pwd.getpwuid(os.geteuid()).pw_name, None)


def chown(path):
    if IS_ROOT:
        shutil.chown(path, RUN_USER, RUN_GROUP)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(maildir, n, fields):
    """n small messages, LF line ends, half in new/ and half in cur/."""
    for sub in ("", "tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
        chown(os.path.join(maildir, sub))
    total = 0
    for i in range(n):
        body = b"From: bench@example.com\nSubject: message %d\n\n%s\n" % (i, b"x" * (i % 200))
        wire = len(body) + body.count(b"\n")
        base = "%d.M%06dP4242Q%d.bench" % (1500000000 + i, i % 1000000, i)
        if fields:
            base += ",S=%d,W=%d" % (len(body), wire)
        sub, name = ("new", base) if i % 2 else ("cur", base + ":2,S")
        fd = os.open(os.path.join(maildir, sub, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, body)
        os.close(fd)
        total += wire
    return total


class Session:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=300)
        self.buf = b""
        self.line()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, c):
        self.sock.sendall(c.encode() + b"\r\n")
        reply = self.line()
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"{c}: {reply!r}")
        return reply

    def multiline(self):
        count = 0
        searched = 0
        while not self.buf.startswith(b".\r\n"):
            if self.buf.find(b"\r\n.\r\n", searched) >= 0:
                break
            searched = max(0, len(self.buf) - 4)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        lines = self.buf.split(b"\r\n")
        for i, l in enumerate(lines):
            if l == b".":
                self.buf = b"\r\n".join(lines[i + 1:])
                return count
            count += 1


def measure(port, login, n, total):
    """Seconds from connect to the end of PASS, STAT, UIDL and LIST (a
    tuple in that order); checks the answers."""
    start = time.perf_counter()
    s = Session(port)
    s.cmd(f"USER {login}")
    s.cmd("PASS bench")
    t_login = time.perf_counter() - start
    assert s.cmd("STAT") == b"+OK %d %d" % (n, total)
    t_stat = time.perf_counter() - start
    s.cmd("UIDL")
    assert s.multiline() == n
    t_uidl = time.perf_counter() - start
    s.cmd("LIST")
    assert s.multiline() == n
    elapsed = time.perf_counter() - start
    s.cmd("QUIT")
    s.sock.close()
    return t_login, t_stat, t_uidl, elapsed


def fmt(t):
    return "login %.3f s, STAT %.3f s, UIDL %.3f s, LIST %.3f s" % t


def median_times(runs):
    return tuple(statistics.median(x[i] for x in runs) for i in range(4))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("-r", "--repeats", type=int, default=5)
    ap.add_argument("--cold", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(BUILD, "tpops")):
        sys.exit(f"no {BUILD}/tpops: run `make` first (or set TPOPS_BUILD)")

    work = tempfile.mkdtemp(prefix="tpops-bench-", dir="/tmp")
    os.chmod(work, 0o755)
    chown(work)
    proc = None
    try:
        root = os.path.join(work, "maildirs")
        os.makedirs(root)
        chown(root)
        port = free_port()
        conf = os.path.join(work, "tpops.conf")
        settings = {"Port": port, "Listen": "127.0.0.1", "SQLite_Path": os.path.join(work, "tpops.db"),
                    "Log": "stderr", "LogLevel": "info", "Foreground": "yes", "Mailbox": "Maildir",
                    "MaildirRoot": root, "AuthFailureDelay": 0}
        if IS_ROOT:
            settings.update(User=RUN_USER, Group=RUN_GROUP)
        with open(conf, "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in settings.items())

        def tool(*a):
            subprocess.run([os.path.join(BUILD, a[0]), "-c", conf, *map(str, a[1:])], check=True,
                           capture_output=True)
        tool("tpops-dbinit")
        totals = {}
        for kind in ("fields", "plain"):
            t0 = time.perf_counter()
            totals[kind] = generate(os.path.join(root, kind), args.n, kind == "fields")
            print(f"generated {args.n} messages ({kind}) in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
            tool("tpops-useradd", "--plain", kind, "bench", f"{kind}@example.com", kind)
        log = open(os.path.join(work, "tpops.log"), "wb")
        proc = subprocess.Popen([os.path.join(BUILD, "tpops"), "-c", conf], stdout=log, stderr=log)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

        def drop_caches():
            subprocess.run(["sync"])
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")

        rows = []
        for kind in ("fields", "plain"):
            if args.cold:
                drop_caches()
            first = measure(port, kind, args.n, totals[kind])
            later = [measure(port, kind, args.n, totals[kind]) for _ in range(args.repeats)]
            for x in later:
                print(f"{kind}: later login: {fmt(x)}", file=sys.stderr)
            later = median_times(later)
            row = [kind, first, later]
            print(f"{kind}: first login: {fmt(first)}")
            print(f"{kind}: later logins, median of {args.repeats}: {fmt(later)}")
            if args.cold:
                drop_caches()
                cold = measure(port, kind, args.n, totals[kind])
                print(f"{kind}: later login, cold page cache: {fmt(cold)}")
                row.append(cold)
            rows.append(row)
        cache = os.path.getsize(os.path.join(root, "plain", "tpops-sizes"))
        print(f"size cache of the plain maildrop: {cache} octets")

        cache_state = "cold" if args.cold else "warm"
        print(f"\n| maildrop of {args.n} messages | end of PASS | end of STAT | end of UIDL | "
              f"end of LIST |")
        print("|---|---|---|---|---|")
        names = {"fields": "S=/W= in names", "plain": "no size fields"}
        for row in rows:
            kind, first, later = row[:3]
            def cells(t):
                return " | ".join(f"{x * 1000:.0f} ms" for x in t)
            print(f"| {names[kind]}: first login ({cache_state} page cache) | {cells(first)} |")
            print(f"| {names[kind]}: later logins, warm (median of {args.repeats}) | "
                  f"{cells(later)} |")
            if len(row) > 3:
                print(f"| {names[kind]}: later login, cold page cache | {cells(row[3])} |")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
