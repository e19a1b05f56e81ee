"""The checks of `make check-ktls`, run inside the VM (tests/ktls/in_vm.sh).

  check.py --messages DIR       writes the six test messages m1..m6 to DIR
  check.py --store NAME --log FILE --admin PROGRAM --control SOCKET \
           --pid PID --metrics PORT [--maildir DIR] [--without-ciphers] \
           [--sendfile-refused] \
           PLAIN-PORT TLS-PORT USER PASSWORD

With kernel TLS in use, every RETR, TOP and UIDL over POP3S and STLS
(full handshakes and resumed ones) must be the same octets as over the
plaintext port; the kernel's own counters (/proc/net/tls_stat) and
tpops's (tpops_tls_sessions_total) must show that it encrypted those
sessions; and a client that resets its
connection in the middle of a RETR must leave no session and no lock
behind. With --without-ciphers (the kernel has tls but none of its
cipher modules) the same octets must come, encrypted by OpenSSL, counted
as such, with one warning in the log.

With --maildir (the Maildir holding m1..m6), the pieces of a RETR that are
in wire form must go straight from the file (SSL_sendfile), exactly those
(tpops_retrieved_sendfile_bytes_total), unless --sendfile-refused (the
kernel refuses sendfile: RETRs copy, with one warning), and the ways a
RETR sent so can end badly are tried: a reset and a close in the middle, a client that
stops reading (CommandTimeout), the file cut short under it, and SIGTERM;
each must leave no session, no lock and no descriptor behind.

Prints one line per check ("ktls-check: ok: ..." or "ktls-check: FAILED:
..."), exits 1 if any failed."""
import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

HOST = "127.0.0.1"


def write_messages(d):
    """Small, LF-only with dot lines, CRLF of 5 MiB, and no final newline."""
    def w(name, data):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    w("m1", b"From: a@ktls.test\r\nSubject: small\r\n\r\nhello\r\n.\r\n..dots\r\n")
    lf = b"".join(b"%sline %d of a message with LF line ends\n" % (b"." if i % 7 == 0 else b"", i)
                  for i in range(30000))
    w("m2", b"From: b@ktls.test\nSubject: lf\n\n" + lf)
    crlf = b"".join(b"%sline %d, CRLF, a longer one to fill it up ......................\r\n"
                    % (b"." if i % 5 == 0 else b"", i) for i in range(70000))
    w("m3", b"From: c@ktls.test\r\nSubject: crlf\r\n\r\n" + crlf)
    w("m4", b"From: d@ktls.test\nSubject: no final newline\n\n" + b"x" * 300000)
    w("m5", crlf_message(b"e", 5 << 20))
    w("m6", odd_pieces())


PIECE = 256 * 1024  # RETR_CHUNK_SIZE


def crlf_message(tag, size):
    """CRLF line ends, no line that starts with '.': all of it in wire form."""
    head = b"From: %s@ktls.test\r\nSubject: wire form\r\n\r\n" % tag
    line = b"%s line of a message already in wire form ..................................\r\n" % tag
    return head + line * (max(0, size - len(head)) // len(line))


def odd_pieces():
    """CRLF, but its first piece ends with the CR of a CRLF (the LF opens
    the second piece), and its third piece has a line to dot-stuff: pieces
    1, 2, 4 and 5 go from the file, 3 through tpops."""
    head = b"From: f@ktls.test\r\nSubject: wire form, odd pieces\r\n\r\n"
    line = b"y" * 70 + b"\r\n"
    first = head + line * ((PIECE - 1 - len(head)) // len(line))
    first += b"z" * (PIECE - 1 - len(first)) + b"\r"
    rest = b"\n" + line * (3 * PIECE // len(line))
    dot = rest.index(b"\r\n", PIECE + 5000) + 2
    rest = rest[:dot] + b".a line to stuff\r\n" + rest[dot:] + line * 3000
    assert len(first) == PIECE and first.endswith(b"\r")
    return first + rest


def from_file(data):
    """The octets of one RETR of data that tpops sends from the file: its
    pieces of RETR_CHUNK_SIZE (less a CR that ends a full one) that are in
    wire form, for a message of more than one piece (src/pop3_stream.c)."""
    if len(data) < PIECE:
        return 0  # read and sent on the I/O thread
    off, total, line_start = 0, 0, True
    while True:
        piece = data[off:off + PIECE]
        got = len(piece)
        p = piece[:-1] if got == PIECE and piece.endswith(b"\r") else piece
        wire = (len(p) > 0 and not p.endswith(b"\r") and not (line_start and p[:1] in (b".", b"\n"))
                and b"\n." not in p and p.count(b"\n") == p.count(b"\r\n"))
        if wire:
            total += len(p)
        off += len(p) if wire else got
        line_start = data[off - 1:off] == b"\n"
        if got < PIECE:
            return total


CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
# TLS 1.2: OpenSSL hands the kernel the receiving side too (kTLS RX)
CTX12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX12.check_hostname = False
CTX12.verify_mode = ssl.CERT_NONE
CTX12.maximum_version = ssl.TLSVersion.TLSv1_2


class Conn:
    def __init__(self, args, mode, session=None, ctx=CTX, rcvbuf=None):
        port = args.tls_port if mode == "pop3s" else args.plain_port
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(120)
        s.connect((HOST, port))
        self.buf = b""
        self.s = ctx.wrap_socket(s, session=session) if mode == "pop3s" else s
        self.line()
        if mode == "stls":
            self.cmd(b"STLS")
            self.s = ctx.wrap_socket(self.s, session=session)

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("connection closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, c):
        self.s.sendall(c + b"\r\n")
        line = self.line()
        if not line.startswith(b"+OK"):
            raise RuntimeError("%r answered %r" % (c, line))
        return line

    def multi(self, c):
        """A multi-line reply, still dot-stuffed, without its last line."""
        self.cmd(c)
        while True:
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                body, self.buf = self.buf[:i + 2], self.buf[i + 5:]
                return body
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError("connection closed in a multi-line reply")
            self.buf += d


def everything(args, mode, session=None, ctx=CTX):
    c = Conn(args, mode, session, ctx)
    c.cmd(b"USER " + args.user.encode())
    c.cmd(b"PASS " + args.password.encode())
    n = int(c.cmd(b"STAT").split()[1])
    retr = [c.multi(b"RETR %d" % i) for i in range(1, n + 1)]
    top = [c.multi(b"TOP %d 3" % i) for i in range(1, n + 1)]
    uidl = c.multi(b"UIDL")
    # pipelined commands (RFC 2449), several in one TLS record
    c.s.sendall(b"NOOP\r\nSTAT\r\nLIST 1\r\n")
    pipelined = [c.line().split(b" ", 1)[0] for _ in range(3)]
    if pipelined != [b"+OK"] * 3:
        raise RuntimeError("pipelined NOOP STAT LIST answered %r" % pipelined)
    c.cmd(b"QUIT")
    result = {"retr": retr, "top": top, "uidl": uidl, "version": getattr(c.s, "version", lambda: None)(),
              "session": getattr(c.s, "session", None), "reused": getattr(c.s, "session_reused", None)}
    c.s.close()
    return result


def tls_sessions_counted(args):
    """tpops_tls_sessions_total by encrypted_by, from `tpops-admin stats`."""
    out = subprocess.run([args.admin, "-s", args.control, "stats"], capture_output=True, text=True).stdout
    counted = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0].startswith("encrypted_by="):
            counted[words[0].split("=", 1)[1]] = int(words[1])
    return counted


def metric(args, name):
    """A sample of the daemon's metrics page (MetricsListen)."""
    with urllib.request.urlopen("http://%s:%d/metrics" % (HOST, args.metrics), timeout=30) as r:
        page = r.read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), page, re.M)
    return int(m.group(1)) if m else None


def sendfile_bytes(args):
    return metric(args, "tpops_retrieved_sendfile_bytes_total")


def who(args):
    return subprocess.run([args.admin, "-s", args.control, "who"], capture_output=True, text=True).stdout


def descriptors(args):
    """What the daemon has open: {fd: what it is}."""
    d = "/proc/%d/fd" % args.pid
    found = {}
    for fd in os.listdir(d):
        try:
            found[fd] = os.readlink(os.path.join(d, fd))
        except OSError:
            pass
    return found


def settled(args, fds):
    """Waits until no session of the user is left and the daemon holds the
    descriptors it did at fds (descriptors()); whether it came to that.
    If not, says what is left."""
    for _ in range(100):
        sessions = who(args)
        now = descriptors(args)
        # fewer is no leak: a connection of the metrics page open at fds
        if args.user not in sessions and len(now) <= len(fds):
            return True
        time.sleep(0.2)
    print("ktls-check: left: sessions %r; descriptors %d, not at most %d; new: %s" % (
        sessions, len(now), len(fds), sorted(set(now.values()) - set(fds.values()))), flush=True)
    return False


def start_retr(args, n):
    """A POP3S session in the middle of RETR n, its first octets read. Its
    receive buffer is small, so that RETR 5 cannot end in the sockets'
    buffers while the client reads nothing."""
    c = Conn(args, "pop3s", rcvbuf=65536)
    c.cmd(b"USER " + args.user.encode())
    c.cmd(b"PASS " + args.password.encode())
    c.s.sendall(b"RETR %d\r\n" % n)
    c.s.recv(1000)
    return c


def tls_stat(name):
    """A counter of the kernel's: sessions it took for sending (TlsTxSw)
    or receiving (TlsRxSw)."""
    with open("/proc/net/tls_stat") as f:
        return int(dict(line.split() for line in f if line.strip())[name])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--messages")
    p.add_argument("--store")
    p.add_argument("--log")
    p.add_argument("--admin")
    p.add_argument("--control")
    p.add_argument("--pid", type=int)
    p.add_argument("--metrics", type=int)
    p.add_argument("--maildir", help="the Maildir with m1..m6: check what goes from the files")
    p.add_argument("--without-ciphers", action="store_true",
                   help="the kernel has tls but no cipher module: OpenSSL must encrypt")
    p.add_argument("--sendfile-refused", action="store_true",
                   help="sendfile(2) fails (LD_PRELOAD): RETRs must copy, with one warning")
    p.add_argument("ports_and_login", nargs="*")
    args = p.parse_args()
    if args.messages:
        write_messages(args.messages)
        return 0
    args.plain_port, args.tls_port = int(args.ports_and_login[0]), int(args.ports_and_login[1])
    args.user, args.password = args.ports_and_login[2], args.ports_and_login[3]
    failures = []

    def check(what, ok):
        print("ktls-check: %s: %s: %s" % ("ok" if ok else "FAILED", args.store, what), flush=True)
        if not ok:
            failures.append(what)

    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection((HOST, args.tls_port), timeout=5).close()
            break
        except OSError:
            if time.time() > deadline:
                check("tpops listens", False)
                return 1
            time.sleep(0.2)
    with open(args.log, errors="replace") as f:
        log = f.read()
    check("the start-up line says kernel TLS", "TLS: kernel TLS (kTLS)" in log)

    want = everything(args, "plain")
    check("%d messages, %d octets in plaintext" % (len(want["retr"]), sum(map(len, want["retr"]))),
          len(want["retr"]) == 6)
    before, before_rx = tls_stat("TlsTxSw"), tls_stat("TlsRxSw")
    session = None
    for mode in ("pop3s", "stls", "pop3s resumed", "stls resumed", "pop3s TLSv1.2", "stls TLSv1.2"):
        ctx = CTX12 if "TLSv1.2" in mode else CTX
        got = everything(args, mode.split()[0], session if "resumed" in mode else None, ctx)
        check("%s: RETR of every message the same octets as in plaintext (%s)" % (mode, got["version"]),
              got["retr"] == want["retr"])
        check("%s: TOP, UIDL and pipelined commands the same" % mode,
              got["top"] == want["top"] and got["uidl"] == want["uidl"])
        if "resumed" in mode:
            check("%s: the session was resumed" % mode, got["reused"] is True)
        if "TLSv1.2" in mode:
            check("%s: TLS 1.2 was negotiated" % mode, got["version"] == "TLSv1.2")
        session = got["session"]
    sessions = tls_stat("TlsTxSw") - before
    received = tls_stat("TlsRxSw") - before_rx
    counted = tls_sessions_counted(args)
    with open(args.log, errors="replace") as f:
        warnings = f.read().count("did not take the records")
    if args.without_ciphers:
        check("the kernel encrypted none of them (TlsTxSw +%d, TlsRxSw +%d)" % (sessions, received),
              sessions == 0 and received == 0)
        check("tpops counted them as OpenSSL's (tpops_tls_sessions_total: %s)" % counted,
              counted.get("kernel") == 0 and counted.get("openssl") == 6)
        check("and said once that the kernel did not take them (warnings in the log: %d)" % warnings, warnings == 1)
    else:
        check("the kernel encrypted the records of those 6 sessions (TlsTxSw +%d)" % sessions,
              sessions >= 6)
        # OpenSSL 3.0 hands the kernel the receiving side of TLS 1.2 only
        check("and decrypted what the 2 TLS 1.2 clients sent (TlsRxSw +%d)" % received, received >= 2)
        check("tpops counted them as the kernel's (tpops_tls_sessions_total: %s)" % counted,
              counted.get("kernel") == 6 and counted.get("openssl") == 0)
        check("and logged no warning that the kernel did not take a session", warnings == 0)

    messages = []
    if args.maildir:
        names = sorted(os.listdir(os.path.join(args.maildir, "cur")) + os.listdir(os.path.join(args.maildir, "new")))
        messages = [open(os.path.join(args.maildir, "cur" if ":" in n else "new", n), "rb").read() for n in names]
    by_file = args.maildir and not args.without_ciphers and not args.sendfile_refused
    expect = 6 * sum(map(from_file, messages)) if by_file else 0
    sent = sendfile_bytes(args)
    check("RETRs sent %d octets from the files, %d expected (tpops_retrieved_sendfile_bytes_total)"
          % (sent, expect), sent == expect)
    if args.sendfile_refused:
        with open(args.log, errors="replace") as f:
            refusals = f.read().count("the kernel does not send these files")
        check("where the kernel refuses sendfile, RETRs copy, and that is said once (%d)" % refusals,
              refusals == 1)

    # a reset, and a close, in the middle of a 5 MiB RETR (m3 goes through
    # tpops, m5 from its file): no session, no lock, no descriptor left
    fds = descriptors(args)
    for n, how in ((3, "reset"), (5, "reset"), (5, "close")):
        c = start_retr(args, n)
        raw = socket.socket(fileno=c.s.detach())
        if how == "reset":
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()
        check("after a %s in the middle of RETR %d, no session and no descriptor is left" % (how, n),
              settled(args, fds))
    again = everything(args, "pop3s")
    check("and the next login gets the maildrop and the same messages", again["retr"] == want["retr"])

    if by_file:
        sendfile_failures(args, check, fds, want)
    return 1 if failures else 0


def sendfile_failures(args, check, fds, want):
    """What can go wrong while a RETR goes from the file."""
    # a client that stops reading: CommandTimeout ends it
    c = start_retr(args, 5)
    check("a client that stops reading in the middle of RETR 5 is dropped after CommandTimeout",
          settled(args, fds))
    c.s.close()

    # the file cut short under the RETR: tpops hangs up, it does not end
    # the message as if it were whole
    path = [os.path.join(args.maildir, d, n) for d in ("new", "cur")
            for n in os.listdir(os.path.join(args.maildir, d)) if n.startswith("1000000005")][0]
    saved = os.path.join(os.path.dirname(args.maildir), "m5.saved")  # not in the Maildir
    shutil.copyfile(path, saved)
    c = start_retr(args, 5)
    with open(path, "r+b") as f:
        f.truncate(PIECE + 1000)
    got = b""
    c.s.settimeout(60)
    try:
        while True:
            d = c.s.recv(1 << 20)
            if not d:
                break
            got += d
    except OSError:
        pass
    check("a file cut short in the middle of its RETR: the connection ends without the message's end "
          "(%d octets came)" % len(got), not got.endswith(b"\r\n.\r\n") and len(got) < len(want["retr"][4]))
    with open(args.log, errors="replace") as f:
        log = f.read()
    check("and the log says so", "sending message 5 from its file: the file ended" in log)
    os.replace(saved, path)
    check("and no session and no descriptor is left", settled(args, fds))
    c.s.close()

    # SIGTERM while a RETR goes from the file: the daemon ends the session
    # and stops (run() checks its exit status)
    c = start_retr(args, 5)
    os.kill(args.pid, signal.SIGTERM)
    c.s.settimeout(60)
    ended = False
    try:
        while c.s.recv(1 << 20):
            pass
        ended = True
    except OSError:
        ended = True
    check("SIGTERM in the middle of a RETR from the file ends the session", ended)
    # run() collects the exit status: wait until there is one (a zombie,
    # or reaped by the shell already), so that its own SIGTERM does not
    # come in the middle of the exit
    for _ in range(300):
        try:
            with open("/proc/%d/stat" % args.pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
