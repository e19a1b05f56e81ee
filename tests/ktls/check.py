"""The checks of `make check-ktls`, run inside the VM (tests/ktls/in_vm.sh).

  check.py --messages DIR       writes the four test messages m1..m4 to DIR
  check.py --store NAME --log FILE --admin PROGRAM --control SOCKET \
           [--without-ciphers] PLAIN-PORT TLS-PORT USER PASSWORD

With kernel TLS in use, every RETR, TOP and UIDL over POP3S and STLS
(full handshakes and resumed ones) must be the same octets as over the
plaintext port; the kernel's own counters (/proc/net/tls_stat) and
tpops's (tpops_tls_sessions_total) must show that it encrypted those
sessions; and a client that resets its
connection in the middle of a RETR must leave no session and no lock
behind. With --without-ciphers (the kernel has tls but none of its
cipher modules) the same octets must come, encrypted by OpenSSL, counted
as such, with one warning in the log. Prints one line per check ("ktls-check: ok: ..." or
"ktls-check: FAILED: ..."), exits 1 if any failed."""
import argparse
import os
import socket
import ssl
import subprocess
import sys
import time

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


CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
# TLS 1.2: OpenSSL hands the kernel the receiving side too (kTLS RX)
CTX12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX12.check_hostname = False
CTX12.verify_mode = ssl.CERT_NONE
CTX12.maximum_version = ssl.TLSVersion.TLSv1_2


class Conn:
    def __init__(self, args, mode, session=None, ctx=CTX):
        port = args.tls_port if mode == "pop3s" else args.plain_port
        s = socket.create_connection((HOST, port), timeout=120)
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
    p.add_argument("--without-ciphers", action="store_true",
                   help="the kernel has tls but no cipher module: OpenSSL must encrypt")
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
          len(want["retr"]) == 4)
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

    # a reset in the middle of a 5 MiB RETR: no session and no lock left
    c = Conn(args, "pop3s")
    c.cmd(b"USER " + args.user.encode())
    c.cmd(b"PASS " + args.password.encode())
    c.s.sendall(b"RETR 3\r\n")
    c.s.recv(1000)
    raw = socket.socket(fileno=c.s.detach())
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.close()
    who = ""
    for _ in range(50):
        who = subprocess.run([args.admin, "-s", args.control, "who"], capture_output=True, text=True).stdout
        if args.user not in who:
            break
        time.sleep(0.1)
    check("after a reset in the middle of a RETR, no session is left (tpops-admin who)", args.user not in who)
    again = everything(args, "pop3s")
    check("and the next login gets the maildrop and the same messages", again["retr"] == want["retr"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
