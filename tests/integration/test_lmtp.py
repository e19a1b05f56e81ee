"""The LMTP listener (RFC 2033, issue 16) spoken to directly: the replies of
every command, pipelining, RSET, errors, limits and timeouts, and what is
stored (the same as tpops-store stores: dot-stuffing undone, LF line ends,
Return-Path and Delivered-To in front). Postfix delivering over it is in
test_postfix.py."""
import os
import poplib
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from conftest import free_port, program

MSG = (b"From: Sender <s@sink.test>\r\n"
       b"Subject: lmtp\r\n"
       b"\r\n"
       b"..a line that starts with a dot\r\n"
       b"bare LF line\n"
       b"a CR\ralone\r\n"
       b"\xe6\x97\xa5\xe6\x9c\xac 8-bit\r\n"
       b"\r\n")
# what is stored: unstuffed, LF line ends, the lone CR kept
STORED = (b"From: Sender <s@sink.test>\n"
          b"Subject: lmtp\n"
          b"\n"
          b".a line that starts with a dot\n"
          b"bare LF line\n"
          b"a CR\ralone\n"
          b"\xe6\x97\xa5\xe6\x9c\xac 8-bit\n"
          b"\n")


class Lmtp:
    """A raw LMTP client: sends bytes, reads reply lines."""

    def __init__(self, address, timeout=30):
        if isinstance(address, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.f = self.sock.makefile("rb")
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        line = self.f.readline()
        assert line.endswith(b"\r\n"), line
        return line[:-2].decode()

    def reply(self):
        """One reply, multi-line ones joined: (code, [texts])."""
        texts = []
        while True:
            line = self.line()
            texts.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), texts

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, text):
        self.send(text.encode() + b"\r\n")
        return self.reply()

    def closed(self):
        """The server closed (a reset too: it closes with our input unread)."""
        try:
            return self.f.read() == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.f.close()
        self.sock.close()


@pytest.fixture
def lmtp_tpops(make_tpops, backend):
    """A started daemon with LMTP on a Unix socket in its directory and
    users alice, bob and carol (quota 600), once per storage backend."""
    def make(**settings):
        t = make_tpops(backend=backend, name=f"lmtp-{time.time_ns()}", **settings)
        t.lmtp = os.path.join(t.dir, "lmtp")
        t.write_config(LMTP_Listen=t.lmtp)
        t.add_user("alice", "secret")
        t.add_user("bob", "pw")
        t.add_user("carol", "pw", None, "--quota", "600")
        return t.start()
    return make


@pytest.fixture
def connect():
    made = []

    def factory(address):
        c = Lmtp(address)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


def retr_all(t, login, password):
    p = poplib.POP3("127.0.0.1", t.port, timeout=30)
    try:
        p.user(login)
        p.pass_(password)
        out = []
        for i in range(1, p.stat()[0] + 1):
            out.append(b"\r\n".join(p.retr(i)[1]) + b"\r\n")
        p.quit()
        return out
    finally:
        p.close()


def crlf(b):
    return b.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


def test_lmtp_off_by_default(make_tpops):
    t = make_tpops().start()
    assert not [n for n in os.listdir(t.dir) if "lmtp" in n]
    assert "LMTP" not in t.read_log()


def test_lmtp_pipelined_transaction(lmtp_tpops, connect):
    """One write with the whole transaction (PIPELINING): replies in order,
    one per accepted recipient after DATA; stored once per user, byte for
    byte as tpops-store would store it."""
    t = lmtp_tpops()
    c = connect(t.lmtp)
    assert c.greeting.startswith("220 ")
    c.send(b"LHLO mx.test\r\n"
           b"MAIL FROM:<s@sink.test> SIZE=300 BODY=8BITMIME\r\n"
           b"RCPT TO:<alice@example.com>\r\n"
           b"RCPT TO:<nosuchuser@example.com>\r\n"
           b"RCPT TO:<Bob@Example.COM>\r\n"
           b"RCPT TO:<alice@example.com>\r\n"
           b"DATA\r\n" + MSG + b".\r\n"
           b"NOOP\r\n")
    code, lhlo = c.reply()
    assert code == 250 and {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"} <= set(lhlo), lhlo
    assert f"SIZE {64 * 1024 * 1024}" in lhlo
    got = c.replies(10)
    assert [g[0] for g in got] == [250, 250, 550, 250, 250, 354, 250, 250, 250, 250], got
    assert got[0][1][0].startswith("2.1.0")
    assert got[2][1][0].startswith("5.1.1 <nosuchuser@example.com>")
    # one reply per accepted RCPT, in order, the duplicate included
    assert [g[1][0].split()[:2] for g in got[6:9]] == [
        ["2.0.0", "<alice@example.com>"], ["2.0.0", "<Bob@Example.COM>"],
        ["2.0.0", "<alice@example.com>"]]
    assert c.cmd("QUIT")[0] == 221
    assert c.closed()

    alice = retr_all(t, "alice", "secret")
    assert alice == [crlf(b"Return-Path: <s@sink.test>\nDelivered-To: alice@example.com\n" + STORED)]
    bob = retr_all(t, "bob", "pw")
    assert bob == [crlf(b"Return-Path: <s@sink.test>\nDelivered-To: Bob@Example.COM\n" + STORED)]
    if t.backend == "sqlite":
        rows = t.sql("SELECT header, body FROM msg ORDER BY id")
        assert [bytes(h) + bytes(b) for h, b in rows] == [
            b"Return-Path: <s@sink.test>\nDelivered-To: alice@example.com\n" + STORED,
            b"Return-Path: <s@sink.test>\nDelivered-To: Bob@Example.COM\n" + STORED]


def test_lmtp_half_closed_client(lmtp_tpops):
    """A client that writes its whole session and then half-closes (as
    `... | nc -U` does) gets every reply, and then the connection ends."""
    t = lmtp_tpops()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(t.lmtp)
    s.sendall(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\n"
              b"RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: half\r\n\r\nx\r\n.\r\n"
              b"MAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: cut")
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    codes = [line[:3] for line in out.split(b"\r\n") if line and line[3:4] != b"-"]
    # greeting, LHLO, MAIL, RCPT, RCPT, DATA, two deliveries, MAIL, RCPT,
    # DATA; the second message never ended: not stored
    assert codes == [b"220", b"250", b"250", b"250", b"250", b"354", b"250", b"250",
                     b"250", b"250", b"354"], out
    assert len(retr_all(t, "alice", "secret")) == 1
    assert len(retr_all(t, "bob", "pw")) == 1


def test_lmtp_several_messages_one_connection(lmtp_tpops, connect):
    """Many transactions on one connection, null sender, RSET between."""
    t = lmtp_tpops()
    c = connect(t.lmtp)
    assert c.cmd("LHLO mx.test")[0] == 250
    for i in range(5):
        assert c.cmd("MAIL FROM:<>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: %d\r\n\r\nbody %d\r\n.\r\n" % (i, i))
        assert c.reply()[0] == 250
        assert c.cmd("RSET")[0] == 250
    msgs = retr_all(t, "alice", "secret")
    assert [m.split(b"\r\n")[2] for m in msgs] == [b"Subject: %d" % i for i in range(5)]
    assert all(m.startswith(b"Return-Path: <>\r\n") for m in msgs)


def test_lmtp_command_errors(lmtp_tpops, connect):
    t = lmtp_tpops()
    c = connect(t.lmtp)
    assert c.cmd("MAIL FROM:<a@b.test>") == (503, ["5.5.1 Say LHLO first"])
    assert c.cmd("EHLO mx.test")[0] == 500
    assert c.cmd("HELO mx.test")[0] == 500
    assert c.cmd("LHLO")[0] == 501
    assert c.cmd("LHLO mx.test")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.com>")[1][0].startswith("5.5.1")
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("FOO")[0] == 500
    assert c.cmd("MAIL FROM:<a b@x>")[1][0].startswith("5.1.7")
    assert c.cmd("MAIL FROM:<a@b.test> XYZ=1")[0] == 555
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=99999999999")[1][0].startswith("5.3.4")
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 503
    assert c.cmd("RCPT TO:<alice>")[1][0].startswith("5.1.3")
    assert c.cmd("RCPT TO:<nosuchuser@example.com>")[0] == 550
    # no valid recipient: DATA fails (RFC 2033 4.2)
    assert c.cmd("DATA") == (503, ["5.5.1 No valid recipients"])
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
    # RSET forgets sender and recipients
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("VRFY alice@example.com")[0] == 252
    # an overlong line is answered and skipped, the connection goes on
    c.send(b"NOOP " + b"x" * 3000 + b"\r\n")
    assert c.reply() == (500, ["5.5.2 Line too long"])
    assert c.cmd("NOOP")[0] == 250
    # a line that never ends is cut off
    c.send(b"x" * 5000)
    assert c.reply() == (500, ["5.5.2 Line too long"])
    assert c.closed()
    t.assert_alive()
    assert retr_all(t, "alice", "secret") == []


def test_lmtp_message_size_limit(lmtp_tpops, connect):
    """LMTP_MaxMessageSize: announced with SIZE, refused at MAIL when the
    SIZE parameter says so, and after DATA (552 5.3.4 for each recipient)
    when the message turns out larger; nothing is stored."""
    t = lmtp_tpops(LMTP_MaxMessageSize=2048)
    c = connect(t.lmtp)
    code, lhlo = c.cmd("LHLO mx.test")
    assert "SIZE 2048" in lhlo
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=4096")[0] == 552
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
    assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: big\r\n\r\n" + (b"y" * 100 + b"\r\n") * 100 + b".\r\n")
    assert [r[1][0][:5] for r in c.replies(2)] == ["5.3.4", "5.3.4"]
    # the connection is still good, and so is a message within the limit
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: small\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(retr_all(t, "alice", "secret")) == 1
    assert retr_all(t, "bob", "pw") == []


def test_lmtp_over_quota(lmtp_tpops, connect):
    """carol's quota is 600 octets: a message that does not fit is refused
    with 552 5.2.2 at DATA (and at RCPT when the SIZE parameter says so);
    the other recipients still get theirs."""
    t = lmtp_tpops()
    c = connect(t.lmtp)
    c.cmd("LHLO mx.test")
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<carol@example.com>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: q\r\n\r\n" + b"z" * 700 + b"\r\n.\r\n")
    (c1, t1), (c2, t2) = c.replies(2)
    assert c1 == 552 and t1[0].startswith("5.2.2 <carol@example.com>"), t1
    assert c2 == 250, t2
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=700")[0] == 250
    assert c.cmd("RCPT TO:<carol@example.com>")[1][0].startswith("5.2.2")
    assert c.cmd("RSET")[0] == 250
    # a message that fits is stored
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<carol@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: q\r\n\r\n" + b"z" * 450 + b"\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(retr_all(t, "carol", "pw")) == 1
    assert len(retr_all(t, "alice", "secret")) == 1


def test_lmtp_store_down(lmtp_tpops, connect):
    """The SQLite database locked for longer than its busy timeout: each
    recipient gets 451 4.3.0 after DATA and nothing is stored; once free,
    the same message on the same connection is delivered once."""
    t = lmtp_tpops()
    if t.backend != "sqlite":
        pytest.skip("the SQLite lock; test_postfix.py takes every store down")
    c = connect(t.lmtp)
    c.cmd("LHLO mx.test")
    con = sqlite3.connect(t.settings["SQLite_Path"], isolation_level=None, timeout=30)
    con.execute("BEGIN EXCLUSIVE")
    try:
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"Subject: down\r\n\r\nx\r\n.\r\n")
        code, text = c.reply()
        assert code == 451 and text[0].startswith("4.3.0 <alice@example.com>"), text
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: down\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(retr_all(t, "alice", "secret")) == 1


def test_lmtp_peer_gone_during_delivery(lmtp_tpops, connect):
    """The client hangs up right after the end of data: the delivery still
    completes (or not) on its own, and the daemon frees the session."""
    t = lmtp_tpops()
    for i in range(20):
        c = Lmtp(t.lmtp)
        c.send(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"
               b"Subject: gone\r\n\r\nx\r\n.\r\n")
        if i % 2:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    c = connect(t.lmtp)
    assert c.cmd("NOOP")[0] == 250
    t.assert_alive()


def test_lmtp_connection_limit(lmtp_tpops, connect):
    """LMTP_MaxConnections: one more connection gets 421 and is closed; a
    place freed is taken again."""
    t = lmtp_tpops(LMTP_MaxConnections=2)
    a, b = connect(t.lmtp), connect(t.lmtp)
    assert a.greeting.startswith("220") and b.greeting.startswith("220")
    c = connect(t.lmtp)
    assert c.greeting.startswith("421 4.3.2"), c.greeting
    assert c.closed()
    assert a.cmd("QUIT")[0] == 221
    assert a.closed()
    deadline = time.monotonic() + 10
    while True:
        d = Lmtp(t.lmtp)
        if d.greeting.startswith("220") or time.monotonic() > deadline:
            break
        d.close()
        time.sleep(0.05)
    assert d.greeting.startswith("220"), d.greeting
    assert d.cmd("NOOP")[0] == 250
    d.close()


def test_lmtp_timeout_and_shutdown(lmtp_tpops, connect):
    t = lmtp_tpops(LMTP_Timeout=2)
    c = connect(t.lmtp)
    start = time.monotonic()
    assert c.reply()[1][0].startswith("4.4.2")
    assert c.closed()
    assert 1.5 < time.monotonic() - start < 30
    # SIGTERM: an idle connection is told 421, the daemon stops, the
    # socket is removed
    c2 = connect(t.lmtp)
    c2.cmd("LHLO mx.test")
    t.proc.send_signal(signal.SIGTERM)
    assert c2.reply()[0] == 421
    assert t.proc.wait(timeout=30) == 0
    assert not os.path.exists(t.lmtp)


def test_lmtp_tcp_when_asked(make_tpops, connect):
    """A TCP address only with the explicit inet: form; anything else that
    is not an absolute path is refused at start-up."""
    t = make_tpops()
    t.add_user("alice", "secret")
    port = free_port()
    t.write_config(LMTP_Listen=f"inet:127.0.0.1:{port}")
    t.start()
    c = connect(("127.0.0.1", port))
    assert c.cmd("LHLO mx.test")[0] == 250
    assert c.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: tcp\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 250
    t.stop()
    for bad in (f"127.0.0.1:{port}", "lmtp", "inet:nohost:24", "/" + "x" * 120):
        t.write_config(LMTP_Listen=bad)
        # tpops -t says so too
        r = subprocess.run([program("tpops"), "-t", "-c", t.conf], capture_output=True,
                           timeout=60, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        assert r.returncode != 0 and b"LMTP_Listen" in r.stderr, r
        with pytest.raises(AssertionError) as e:
            t.start()
        t.proc = None
        t.log.close()
        assert "LMTP_Listen" in str(e.value), str(e.value)


def test_lmtp_metrics(make_tpops, connect):
    """tpops_lmtp_deliveries_total counts each recipient's outcome."""
    import urllib.request
    port = free_port()
    t = make_tpops(MetricsListen=f"127.0.0.1:{port}")
    t.lmtp = os.path.join(t.dir, "lmtp")
    t.write_config(LMTP_Listen=t.lmtp)
    t.add_user("alice", "secret")
    t.add_user("carol", "pw", None, "--quota", "100")
    t.start()
    c = connect(t.lmtp)
    c.send(b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.com>\r\n"
           b"RCPT TO:<nosuchuser@example.com>\r\nRCPT TO:<carol@example.com>\r\n"
           b"DATA\r\nSubject: m\r\n\r\n" + b"x" * 200 + b"\r\n.\r\n")
    codes = [r[0] for r in c.replies(8)]
    assert codes == [250, 250, 250, 550, 250, 354, 250, 552], codes
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        page = r.read().decode()
    got = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
           if line.startswith("tpops_lmtp_deliveries_total")}
    assert got == {'tpops_lmtp_deliveries_total{result="stored"}': 1,
                   'tpops_lmtp_deliveries_total{result="unknown_user"}': 1,
                   'tpops_lmtp_deliveries_total{result="over_quota"}': 1,
                   'tpops_lmtp_deliveries_total{result="temporary_error"}': 0,
                   'tpops_lmtp_deliveries_total{result="permanent_error"}': 0}, got
