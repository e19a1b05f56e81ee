"""Running tpops for real: SIGHUP reload (a changed and a broken
configuration), SIGTERM graceful stop (idle sessions, a QUIT in the middle
of its commit), inetd mode on pipes and on a socket, the HAProxy PROXY
protocol v1/v2 (good, bad and pipelined headers), `tpops -t`, systemd
socket activation and sd_notify."""
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time

import pytest

from conftest import BUILD, DAEMON_ASAN, IS_ROOT, RUN_GROUP, RUN_USER, TOOL_ASAN, Client, \
    free_port, program

MSG1 = b"Subject: one\n\nfirst message\n.dot line\n"
MSG2 = b"Subject: two\n\nsecond message\n"
MSG3 = b"Subject: three\n\nthird message\r\n..two dots\n\nend"

ENV_DAEMON = dict(os.environ, ASAN_OPTIONS=DAEMON_ASAN,
                  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
ENV_TOOL = dict(os.environ, ASAN_OPTIONS=TOOL_ASAN,
                UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")


def wire(msg):
    """What RETR delivers (before dot-stuffing): CRLF line ends, a last
    line without one gets one."""
    out = re.sub(rb"\r?\n", b"\r\n", msg)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def stuffed(msg):
    return re.sub(rb"(^|\r\n)\.", rb"\1..", wire(msg))


def wait_for(predicate, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def wait_log(t, text, timeout=10, count=1):
    wait_for(lambda: t.read_log().count(text) >= count, timeout,
             f"{text!r} in the log:\n" + t.read_log())


def launch(t, argv=None, ready="serving POP3 on port"):
    """Starts the daemon like Tpops.start, but ready when its log says it
    serves (a PROXY listener greets nobody without a header; a
    socket-activated one is not on t.port)."""
    assert t.proc is None
    before = t.read_log().count(ready) if os.path.exists(t.log_path) else 0
    t.log = open(t.log_path, "ab")
    t.proc = subprocess.Popen(argv or [program("tpops"), "-c", t.conf],
                              stdout=t.log, stderr=subprocess.STDOUT, env=ENV_DAEMON)
    deadline = time.time() + 20
    while time.time() < deadline:
        if t.proc.poll() is not None:
            raise AssertionError(f"tpops exited {t.proc.returncode}:\n{t.read_log()}")
        if t.read_log().count(ready) > before:
            return t
        time.sleep(0.05)
    raise AssertionError("tpops did not get ready:\n" + t.read_log())


def with_mail(t, *messages):
    t.add_user("alice", "secret")
    for m in messages:
        t.store("alice@example.com", m)
    return t


def retr(c, n):
    status = c.cmd(f"RETR {n}")
    assert status.startswith(b"+OK"), status
    data = c.buf
    while b"\r\n.\r\n" not in data and not data.startswith(b".\r\n"):
        more = c.sock.recv(65536)
        assert more, "connection closed inside RETR"
        data += more
    if data.startswith(b".\r\n"):
        body, c.buf = b"", data[3:]
    else:
        i = data.index(b"\r\n.\r\n")
        body, c.buf = data[:i + 2], data[i + 5:]
    return body


def subjects(t):
    return sorted(bytes(h).split(b"\n")[0] for (h,) in t.sql("SELECT header FROM msg"))


def assert_refused(port, timeout=5):
    """A connection that is answered '-ERR [SYS/TEMP] Too many connections' and closed."""
    c = Client(port, timeout=timeout)
    try:
        assert c.greeting.startswith(b"-ERR [SYS/TEMP] Too many connections"), c.greeting
        assert c.closed()
    finally:
        c.close()


# ---------------------------------------------------------------- SIGHUP


def test_sighup_new_config_for_new_sessions(make_tpops):
    t = with_mail(make_tpops(CommandTimeout=60, MaxConnectionsPerIP=3), MSG1, MSG2).start()
    old = Client(t.port)
    old.login()
    t.write_config(CommandTimeout=2, MaxConnectionsPerIP=2)
    t.proc.send_signal(signal.SIGHUP)
    wait_log(t, "configuration reloaded from")
    t.assert_alive()

    # MaxConnectionsPerIP 2: the old session and one new one; a third is
    # refused (the old configuration allowed it)
    new = Client(t.port)
    assert new.greeting.startswith(b"+OK")
    assert_refused(t.port)

    # CommandTimeout 2 for the new session; the old one keeps 60
    started = time.time()
    new.sock.settimeout(10)
    assert new.line() == b"-ERR Disconnected for inactivity"
    assert 1.5 < time.time() - started < 8
    assert new.closed()
    new.close()
    time.sleep(0.5)  # the old session has been idle longer than 2 s too
    assert old.cmd("STAT").startswith(b"+OK 2 ")
    assert retr(old, 1) == stuffed(MSG1)
    assert old.cmd("QUIT").startswith(b"+OK")
    assert old.closed()
    old.close()
    t.assert_alive()


def test_sighup_broken_config_is_refused(make_tpops):
    t = with_mail(make_tpops(MaxConnectionsPerIP=2), MSG1).start()
    old = Client(t.port)
    old.login()
    good = dict(t.settings)

    # a bad value, next to a change that must not take effect either
    t.write_config(MaxConnectionsPerIP=1, CommandTimeout="soon")
    t.proc.send_signal(signal.SIGHUP)
    wait_log(t, "reload refused, the running configuration stays in force:")
    line = [l for l in t.read_log().splitlines() if "reload refused" in l][-1]
    assert "tpops.conf:" in line and "CommandTimeout" in line, line
    t.assert_alive()
    second = Client(t.port)  # MaxConnectionsPerIP is still 2
    assert second.greeting.startswith(b"+OK"), second.greeting
    assert_refused(t.port)
    second.close()

    # a configuration that parses but cannot work: a certificate that is not there
    t.settings = dict(good)
    t.write_config(MaxConnectionsPerIP=1, TLS_Cert=os.path.join(t.dir, "missing.pem"),
                   TLS_Key=os.path.join(t.dir, "missing.key"))
    t.proc.send_signal(signal.SIGHUP)
    wait_log(t, "reload refused, the running configuration stays in force:", count=2)
    t.assert_alive()
    second = Client(t.port)
    assert second.greeting.startswith(b"+OK"), second.greeting
    assert second.cmd("CAPA").startswith(b"+OK")
    caps = second.multiline()
    assert b"STLS" not in caps  # no TLS came in with the refused configuration
    second.close()

    # an unknown key
    t.settings = dict(good)
    with open(t.conf, "a") as f:
        f.write("NoSuchKey: 1\n")
    t.proc.send_signal(signal.SIGHUP)
    wait_log(t, "reload refused, the running configuration stays in force:", count=3)
    assert "NoSuchKey" in [l for l in t.read_log().splitlines() if "reload refused" in l][-1]

    # the running session never noticed
    assert old.cmd("STAT").startswith(b"+OK 1 ")
    assert retr(old, 1) == stuffed(MSG1)

    # and a good configuration is taken again afterwards
    t.settings = dict(good)
    t.write_config(MaxConnectionsPerIP=1)
    t.proc.send_signal(signal.SIGHUP)
    wait_log(t, "configuration reloaded from")
    wait_for(lambda: t.read_log().count("reload refused") == 3, 1, "no 4th refusal")
    assert_refused(t.port)  # the old session holds the one connection allowed now
    assert old.cmd("QUIT").startswith(b"+OK")
    old.close()
    t.assert_alive()


# ---------------------------------------------------------------- SIGTERM


def test_sigterm_idle_sessions(make_tpops):
    t = with_mail(make_tpops(), MSG1, MSG2, MSG3).start()
    c = Client(t.port)
    c.login()
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 3").startswith(b"+OK")
    anon = Client(t.port)  # still in AUTHORIZATION
    assert t.sql("SELECT count(*) FROM locks WHERE expires > 0") == [(1,)]

    started = time.time()
    t.proc.send_signal(signal.SIGTERM)
    for client in (c, anon):
        client.sock.settimeout(5)
        assert client.line().startswith(b"-ERR [SYS/TEMP] Server shutting down")
        assert client.closed()
        client.close()
    assert t.proc.wait(timeout=10) == 0
    assert time.time() - started < 5
    log = t.read_log()
    assert "shutting down" in log and "stopped" in log
    assert "logout: user=alice" in log and "dele=0/0" in log
    # nothing deleted though DELE was sent; the maildrop lock is released
    assert subjects(t) == [b"Subject: one", b"Subject: three", b"Subject: two"]
    assert t.sql("SELECT count(*) FROM locks WHERE expires > strftime('%s','now')") == [(0,)]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", t.port), timeout=2).close()


def hold_write_lock(t):
    """Takes SQLite's write lock on the database, as another writer would."""
    con = sqlite3.connect(t.settings["SQLite_Path"], timeout=10, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    return con


def test_sigterm_lets_a_quit_commit_finish(make_tpops):
    t = with_mail(make_tpops(LogLevel="debug"), MSG1, MSG2, MSG3)
    t.add_user("bob", "pw")
    t.store("bob@example.com", MSG1)
    t.start()
    c = Client(t.port)
    c.login()
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 3").startswith(b"+OK")
    idle = Client(t.port)
    idle.login("bob", "pw")

    con = hold_write_lock(t)
    try:
        c.send(b"QUIT\r\n")
        wait_log(t, "<- QUIT")  # read: the commit is waiting for the lock
        time.sleep(0.2)
        t.proc.send_signal(signal.SIGTERM)
        idle.sock.settimeout(5)
        # told at once; its connection ends once its maildrop lock is
        # released, which needs the database too
        assert idle.line().startswith(b"-ERR [SYS/TEMP] Server shutting down")
        time.sleep(1.0)
        # the committing session got nothing yet, and the daemon waits for it
        c.sock.settimeout(0.2)
        with pytest.raises((socket.timeout, TimeoutError)):
            c.sock.recv(100)
        t.assert_alive()
    finally:
        con.rollback()
        con.close()
    c.sock.settimeout(10)
    assert c.line() == b"+OK tpops signing off (2 messages deleted)"
    assert c.closed()
    assert idle.closed()
    assert t.proc.wait(timeout=10) == 0
    # exactly the two deletions, bob's message untouched
    assert subjects(t) == [b"Subject: one", b"Subject: two"]
    assert t.sql("SELECT count(*) FROM msg m JOIN user u ON u.uid = m.uid"
                 " WHERE u.login = 'alice'") == [(1,)]
    assert "logout: user=alice" in t.read_log()


def test_sigterm_quit_commit_that_fails_deletes_nothing(make_tpops):
    """The database stays locked past its busy timeout (5 s): the commit
    fails as a whole, the client is told, nothing is deleted, and the
    daemon exits once the session is over, within its 10 s grace."""
    t = with_mail(make_tpops(LogLevel="debug"), MSG1, MSG2, MSG3).start()
    c = Client(t.port)
    c.login()
    for n in (1, 2, 3):
        assert c.cmd(f"DELE {n}").startswith(b"+OK")
    con = hold_write_lock(t)
    try:
        c.send(b"QUIT\r\n")
        wait_log(t, "<- QUIT")
        started = time.time()
        t.proc.send_signal(signal.SIGTERM)
        # the commit gives up after 5 s; the lock release after it needs
        # the database as well: let it have it at 6.5 s
        time.sleep(6.5)
        t.assert_alive()
    finally:
        con.rollback()
        con.close()
    c.sock.settimeout(10)
    assert c.line().startswith(b"-ERR [SYS/TEMP] Messages could not be deleted; they are kept")
    assert c.closed()
    assert t.proc.wait(timeout=10) == 0
    assert time.time() - started < 10.5
    assert "deleting messages at QUIT: sqlite: begin transaction: database is locked" \
        in t.read_log()
    assert subjects(t) == [b"Subject: one", b"Subject: three", b"Subject: two"]
    assert t.sql("SELECT count(*) FROM locks") == [(0,)]


def test_stalled_reader_frees_its_slot(make_tpops):
    """A client that stops reading in the middle of a big RETR is cut off
    after CommandTimeout, and its session (connection slot, maildrop lock)
    is gone one CommandTimeout later even though its output never drains."""
    big = b"Subject: big\n\n" + (b"z" * 998 + b"\n") * 8000
    t = with_mail(make_tpops(CommandTimeout=1, MaxConnectionsPerIP=1), big).start()
    wait_log(t, "disconnect: from=127.0.0.1")  # start()'s probe is gone
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", t.port))
    c = Client.__new__(Client)
    c.sock, c.buf = s, b""
    assert c.line().startswith(b"+OK")
    c.login()
    started = time.time()
    c.send(b"RETR 1\r\n")  # and never read again
    wait_log(t, "logout: user=alice", timeout=10)
    assert time.time() - started < 5
    d = Client(t.port)  # the one connection allowed is free again
    d.login()  # and so is the maildrop
    assert d.cmd("QUIT").startswith(b"+OK")
    d.close()
    s.close()


# ---------------------------------------------------------------- inetd


def inetd_argv(t):
    return [program("tpops"), "--inetd", "-f", "-c", t.conf]


def test_inetd_pipes(make_tpops):
    t = with_mail(make_tpops(), MSG1, MSG3)
    p = subprocess.Popen(inetd_argv(t), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV_DAEMON)
    try:
        def cmd(line):
            p.stdin.write(line.encode() + b"\r\n")
            p.stdin.flush()
            return p.stdout.readline()

        def multiline():
            data = b""
            while True:
                line = p.stdout.readline()
                assert line, "end of output inside a multi-line answer"
                if line == b".\r\n":
                    return data
                data += line

        assert p.stdout.readline().startswith(b"+OK tpops ready <")
        assert cmd("USER alice").startswith(b"+OK")
        assert cmd("PASS secret").startswith(b"+OK")
        assert cmd("STAT") == b"+OK 2 %d\r\n" % (len(wire(MSG1)) + len(wire(MSG3)))
        assert cmd("UIDL").startswith(b"+OK")
        assert len(multiline().splitlines()) == 2
        assert cmd("RETR 1").startswith(b"+OK")
        assert multiline() == stuffed(MSG1)
        assert cmd("RETR 2").startswith(b"+OK")
        assert multiline() == stuffed(MSG3)
        assert cmd("DELE 1").startswith(b"+OK")
        assert cmd("QUIT") == b"+OK tpops signing off (1 messages deleted)\r\n"
        assert p.stdout.read() == b""  # end of output
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        err = p.stderr.read().decode(errors="replace")
    assert "connect: from=local" in err and "logout: user=alice" in err, err
    assert "AddressSanitizer" not in err and "runtime error" not in err, err
    assert subjects(t) == [b"Subject: three"]


def test_inetd_pipes_pipelined_then_eof(make_tpops):
    """A whole session written at once, stdin closed: every answer comes,
    the QUIT commits, the process ends."""
    t = with_mail(make_tpops(), MSG1, MSG2)
    r = subprocess.run(inetd_argv(t), input=b"USER alice\r\nPASS secret\r\nLIST\r\nRETR 2\r\n"
                       b"DELE 2\r\nQUIT\r\n", capture_output=True, env=ENV_DAEMON, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split(b"\r\n")
    assert out[0].startswith(b"+OK tpops ready")
    assert out[-2].startswith(b"+OK tpops signing off (1 messages deleted)"), out
    assert stuffed(MSG2) in r.stdout
    assert subjects(t) == [b"Subject: one"]


def test_inetd_socket(make_tpops):
    t = with_mail(make_tpops(), MSG1, MSG2)
    ours, theirs = socket.socketpair()
    err_path = os.path.join(t.dir, "inetd.log")
    with open(err_path, "wb") as err:
        p = subprocess.Popen(inetd_argv(t), stdin=theirs, stdout=theirs, stderr=err,
                             env=ENV_DAEMON)
    theirs.close()
    try:
        ours.settimeout(10)
        c = Client.__new__(Client)
        c.sock, c.buf = ours, b""
        assert c.line().startswith(b"+OK tpops ready <")
        c.login()
        assert c.cmd("STAT").startswith(b"+OK 2 ")
        assert retr(c, 2) == stuffed(MSG2)
        assert retr(c, 1) == stuffed(MSG1)
        assert c.cmd("DELE 2").startswith(b"+OK")
        assert c.cmd("QUIT") == b"+OK tpops signing off (1 messages deleted)"
        assert c.closed(timeout=10)
        assert p.wait(timeout=10) == 0
    finally:
        ours.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(err_path, "rb") as f:
        log = f.read().decode(errors="replace")
    assert "connect: from=local" in log and "logout: user=alice" in log, log
    assert "AddressSanitizer" not in log and "runtime error" not in log, log
    assert subjects(t) == [b"Subject: one"]


# ---------------------------------------------------------------- PROXY


def v1(src, dst="127.0.0.1", sport=51000, dport=110):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, dst=None, sport=51000, dport=110, command=0x21, tlvs=b""):
    if ":" in src:
        fam, dst = 0x21, dst or "::1"
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam, dst = 0x11, dst or "127.0.0.1"
        addrs = socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
    payload = addrs + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([command, fam]) + struct.pack("!H", len(payload)) + payload


def proxied(t, header, timeout=10):
    """A Client whose connection starts with a PROXY header."""
    c = Client.__new__(Client)
    c.sock = socket.create_connection(("127.0.0.1", t.port), timeout=timeout)
    c.buf = b""
    c.sock.sendall(header)
    c.greeting = c.line()
    return c


@pytest.fixture
def proxy_tpops(make_tpops):
    t = with_mail(make_tpops(ProxyProtocol="yes", MaxConnectionsPerIP=2), MSG1)
    return launch(t)


def test_proxy_v1_and_v2_name_the_client(proxy_tpops):
    t = proxy_tpops
    for header, address in [(v1("203.0.113.7"), "203.0.113.7"),
                            (v1("2001:db8::7", "::1"), "2001:db8::7"),
                            (v2("198.51.100.9"), "198.51.100.9"),
                            (v2("2001:db8::42", tlvs=b"\x05\x00\x03abc"), "2001:db8::42")]:
        c = proxied(t, header)
        assert c.greeting.startswith(b"+OK tpops ready"), (header, c.greeting)
        c.login()
        assert retr(c, 1) == stuffed(MSG1)
        assert c.cmd("QUIT").startswith(b"+OK")
        c.close()
        wait_log(t, f"connect: from={address} ")
        wait_log(t, f"logout: user=alice from={address} ")
    # a failed login is logged (and slowed down) under the header's address
    c = proxied(t, v1("203.0.113.99"))
    assert c.cmd("USER alice").startswith(b"+OK")
    assert c.cmd("PASS wrong").startswith(b"-ERR [AUTH]")
    c.close()
    wait_log(t, "auth failed: user=alice from=203.0.113.99 ")
    # LOCAL (a health check) keeps the connection's own address
    c = proxied(t, v2("10.0.0.1", command=0x20))
    assert c.greeting.startswith(b"+OK")
    c.close()
    wait_log(t, "connect: from=127.0.0.1 ")
    assert "connect: from=10.0.0.1" not in t.read_log()
    t.assert_alive()


def test_proxy_per_ip_limit_uses_the_header_address(proxy_tpops):
    t = proxy_tpops  # MaxConnectionsPerIP: 2, every connection from 127.0.0.1
    a = proxied(t, v1("203.0.113.7"))
    b = proxied(t, v2("203.0.113.7"))
    assert a.greeting.startswith(b"+OK") and b.greeting.startswith(b"+OK")
    third = proxied(t, v1("203.0.113.7", sport=51001))
    assert third.greeting.startswith(b"-ERR [SYS/TEMP] Too many connections")
    assert third.closed()
    third.close()
    other = proxied(t, v1("203.0.113.8"))
    assert other.greeting.startswith(b"+OK")
    other2 = proxied(t, v2("203.0.113.9"))
    assert other2.greeting.startswith(b"+OK")
    for c in (a, b, other, other2):
        c.close()
    t.assert_alive()


BAD_HEADERS = {
    "pop3_without_header": b"USER alice\r\n",
    "http": b"GET / HTTP/1.0\r\n\r\n",
    "binary_garbage": bytes(range(256)),
    "v1_too_long": b"PROXY TCP4 " + b"1" * 200 + b"\r\n",
    "v1_no_crlf_too_long": b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 110" + b" " * 100,
    "v1_bad_address": b"PROXY TCP4 203.0.113.300 127.0.0.1 51000 110\r\n",
    "v1_bad_port": b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 110\r\n",
    "v1_family_mismatch": b"PROXY TCP6 203.0.113.7 127.0.0.1 51000 110\r\n",
    "v1_lf_only": b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 110\n",
    "v2_bad_version": V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12,
    "v2_bad_command": V2_SIG + b"\x2f\x11\x00\x0c" + b"\x00" * 12,
    "v2_short_addresses": V2_SIG + b"\x21\x11\x00\x04" + b"\x00" * 4,
    "v2_too_long": V2_SIG + b"\x21\x11\xff\xff" + b"\x00" * 8000,
    "v2_bad_signature": b"\r\n\r\n\x00\r\nQUIZ\n\x21\x11\x00\x0c" + b"\x00" * 12,
}
TRUNCATED = {
    "v1_truncated": b"PROXY TCP4 203.0.",
    "v2_truncated_fixed": V2_SIG[:7],
    "v2_truncated_payload": v2("203.0.113.7")[:20],
}


def closed_without_reply(t, data, half_close=False):
    s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: fine
        received = b""
        started = time.time()
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
        assert received == b"", received
        assert time.time() - started < 4, "not closed at once"
    finally:
        s.close()


def test_proxy_bad_headers_close_without_reply(proxy_tpops):
    t = proxy_tpops
    for name, data in BAD_HEADERS.items():
        closed_without_reply(t, data)
        t.assert_alive()
    for name, data in TRUNCATED.items():
        closed_without_reply(t, data, half_close=True)
        t.assert_alive()
    wait_log(t, "PROXY header refused", count=len(BAD_HEADERS) + len(TRUNCATED))
    assert "connect: from=" not in t.read_log()
    # the listener still works
    c = proxied(t, v1("203.0.113.7"))
    assert c.greeting.startswith(b"+OK")
    c.login()
    c.close()


def test_proxy_header_with_pipelined_commands(proxy_tpops):
    t = proxy_tpops
    for header in (v1("203.0.113.7"), v2("203.0.113.8")):
        s = socket.create_connection(("127.0.0.1", t.port), timeout=10)
        c = Client.__new__(Client)
        c.sock, c.buf = s, b""
        s.sendall(header + b"USER alice\r\nPASS secret\r\nSTAT\r\nRETR 1\r\nQUIT\r\n")
        assert c.line().startswith(b"+OK tpops ready")
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK")
        assert c.line() == b"+OK 1 %d" % len(wire(MSG1))
        assert c.line().startswith(b"+OK")
        assert c.multiline() == wire(MSG1).split(b"\r\n")[:-1]
        assert c.line().startswith(b"+OK tpops signing off")
        assert c.closed()
        s.close()
    wait_log(t, "logout: user=alice from=203.0.113.8 ")


# ---------------------------------------------------------------- tpops -t


def check_config(t):
    return subprocess.run([program("tpops"), "-t", "-c", t.conf], capture_output=True,
                          env=ENV_TOOL, timeout=60)


def test_check_config(make_tpops, tmpdir_shared):
    t = make_tpops()
    r = check_config(t)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert f"the configuration file {t.conf} syntax is ok" in out
    assert "database (sqlite) reached" in out

    good = dict(t.settings)
    t.write_config(Port=99999)
    r = check_config(t)
    assert r.returncode == 78
    assert re.search(r"tpops\.conf:\d+: Port: \"99999\" is not a number", r.stderr.decode()), r.stderr
    assert r.stdout == b""

    t.settings = dict(good)
    t.write_config()
    with open(t.conf, "a") as f:
        f.write("NoSuchKey: 1\n")
    r = check_config(t)
    assert r.returncode == 78 and b"NoSuchKey" in r.stderr, r.stderr

    t.settings = dict(good)
    t.write_config(TLS_Cert="/etc/tpops-test-missing.pem")
    r = check_config(t)
    assert r.returncode == 78 and b"TLS_Cert and TLS_Key" in r.stderr, r.stderr

    # the database cannot be reached: a directory that does not exist
    t.settings = dict(good)
    t.write_config(SQLite_Path=os.path.join(tmpdir_shared, "no-such-dir", "tpops.db"))
    r = check_config(t)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert "database: sqlite: cannot open" in err and "no-such-dir" in err, err
    assert "test failed" in err and b"reached" not in r.stdout

    # a database without the schema
    t.settings = dict(good)
    t.write_config(SQLite_Path=os.path.join(t.dir, "empty.db"))
    r = check_config(t)
    assert r.returncode != 0
    assert b"tpops-dbinit" in r.stderr, r.stderr


# ---------------------------------------------------------------- systemd


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate not installed (package systemd)")
def test_socket_activation(make_tpops):
    t = with_mail(make_tpops(), MSG1)
    port = free_port()
    while port == t.port:
        port = free_port()
    # it passes the child only the environment it is told to (-E)
    argv = ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=pop3",
            "-E", "ASAN_OPTIONS=" + ENV_DAEMON["ASAN_OPTIONS"],
            "-E", "UBSAN_OPTIONS=" + ENV_DAEMON["UBSAN_OPTIONS"],
            program("tpops"), "-f", "-c", t.conf]
    t.log = open(t.log_path, "ab")
    t.proc = subprocess.Popen(argv, stdout=t.log, stderr=subprocess.STDOUT, env=ENV_DAEMON)
    # systemd-socket-activate listens first ("Listening on ..."); the
    # first connection starts tpops, which serves it on the passed socket
    wait_log(t, f"127.0.0.1:{port}")
    c = Client(port, timeout=20)
    assert c.greeting.startswith(b"+OK tpops ready"), c.greeting
    c.login()
    assert retr(c, 1) == stuffed(MSG1)
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    d = Client(port)
    assert d.greeting.startswith(b"+OK")
    d.close()
    # tpops took the passed socket and did not bind Port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", t.port), timeout=2).close()
    t.assert_alive()
    assert t.proc.send_signal(signal.SIGTERM) is None
    assert t.proc.wait(timeout=10) == 0
    log = t.read_log()
    assert "serving POP3" in log and "logout: user=alice" in log, log


def test_sd_notify(make_tpops, tmpdir_shared):
    """READY=1 once serving, RELOADING=1 then READY=1 around a SIGHUP,
    STOPPING=1 at SIGTERM: what Type=notify in tpops.service relies on."""
    t = with_mail(make_tpops())
    path = os.path.join(tmpdir_shared, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o777)  # the daemon sends after dropping to its user
    sock.settimeout(10)
    messages = []
    try:
        env = dict(ENV_DAEMON, NOTIFY_SOCKET=path)
        t.log = open(t.log_path, "ab")
        t.proc = subprocess.Popen([program("tpops"), "-c", t.conf], stdout=t.log,
                                  stderr=subprocess.STDOUT, env=env)
        ready = sock.recv(4096).decode()
        assert ready.startswith("READY=1"), ready
        c = Client(t.port)  # serving once READY=1 is sent
        assert c.greeting.startswith(b"+OK")
        c.close()
        t.proc.send_signal(signal.SIGHUP)
        reloading = sock.recv(4096).decode()
        assert reloading.startswith("RELOADING=1"), reloading
        assert sock.recv(4096).decode().startswith("READY=1")
        t.proc.send_signal(signal.SIGTERM)
        assert sock.recv(4096).decode() == "STOPPING=1"
        assert t.proc.wait(timeout=10) == 0
    finally:
        sock.close()
