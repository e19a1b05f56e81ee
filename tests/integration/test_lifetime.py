"""A session's end: a client that vanishes (FIN or RST) in any wait of its
session costs nothing, and its maildrop is free again at once (README,
"What a vanished client costs")."""
import socket
import ssl
import struct
import time

import pytest

from pop3tls import HOST, cert, client_context, tls_settings  # noqa: F401

BIG = b"Subject: big\n\n" + (b"y" * 1000 + b"\n") * 5000  # about 5 MB


def big_installation(make_tpops, backend, cert, **settings):
    t = make_tpops(backend=backend, CommandTimeout=600, **tls_settings(cert), **settings)
    t.add_user("alice", "secret")
    t.store("alice@example.com", BIG)
    t.store("alice@example.com", b"Subject: small\n\nbody\n")
    return t.start()


def connect(t, cert, tls):
    s = socket.create_connection((HOST, t.settings["TLS_Port"] if tls else t.port), timeout=10)
    if tls:
        s = client_context(cert).wrap_socket(s, server_hostname="tpops.test")
    return s


def read_line(s, buf=b""):
    while b"\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    line, rest = buf.split(b"\r\n", 1)
    return line, rest


def login(s):
    buf = b""
    greeting, buf = read_line(s, buf)
    assert greeting.startswith(b"+OK")
    s.sendall(b"USER alice\r\nPASS secret\r\n")
    a, buf = read_line(s, buf)
    b, buf = read_line(s, buf)
    assert b.startswith(b"+OK"), (a, b)
    return buf


def cut(s, how):
    if how == "rst":
        raw = s if not isinstance(s, ssl.SSLSocket) else s
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def logs_in_within(t, cert, seconds):
    """Seconds until alice logs in again (the old session's lock gone)."""
    start = time.monotonic()
    while True:
        s = socket.create_connection((HOST, t.port), timeout=10)
        try:
            buf = b""
            _, buf = read_line(s, buf)
            s.sendall(b"USER alice\r\nPASS secret\r\n")
            _, buf = read_line(s, buf)
            reply, buf = read_line(s, buf)
            if reply.startswith(b"+OK"):
                s.sendall(b"QUIT\r\n")
                read_line(s, buf)
                return time.monotonic() - start
            assert b"[IN-USE]" in reply, reply
        finally:
            s.close()
        if time.monotonic() - start > seconds:
            return time.monotonic() - start
        time.sleep(0.05)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("pipelined", [False, True], ids=["retr", "dele-retr"])
def test_client_vanishing_in_retr_frees_the_maildrop(make_tpops, backend, cert, tls, how,
                                                      pipelined):
    t = big_installation(make_tpops, backend, cert)
    s = connect(t, cert, tls)
    login(s)
    s.sendall(b"DELE 2\r\nRETR 1\r\n" if pipelined else b"RETR 1\r\n")
    got = 0
    while got < 64 * 1024:
        got += len(s.recv(65536))
    cut(s, how)
    waited = logs_in_within(t, cert, 5)
    assert waited < 1.0, f"the maildrop stayed locked for {waited:.1f} s"
    assert t.sql("SELECT COUNT(*) FROM locks")[0][0] == 0 if backend == "sqlite" else True
    # the vanished session deleted nothing: its DELE was never committed
    s = socket.create_connection((HOST, t.port), timeout=10)
    buf = login(s)
    s.sendall(b"STAT\r\n")
    stat, buf = read_line(s, buf)
    assert stat.startswith(b"+OK 2 "), stat
    s.close()
    t.assert_alive()


def test_idle_timer_stops_during_the_login_delay(make_tpops, cert):
    """A failed login held longer than CommandTimeout is answered, and the
    session goes on: the server was working, not the client idling."""
    t = make_tpops(CommandTimeout=2, AuthFailureDelay=4, AuthFailureDelayMax=4)
    t.add_user("alice", "secret")
    t.start()
    s = socket.create_connection((HOST, t.port), timeout=15)
    buf = b""
    _, buf = read_line(s, buf)
    start = time.monotonic()
    s.sendall(b"USER alice\r\nPASS wrong\r\n")
    _, buf = read_line(s, buf)
    reply, buf = read_line(s, buf)
    held = time.monotonic() - start
    assert reply.startswith(b"-ERR [AUTH]"), reply
    assert held >= 3.5, held
    s.sendall(b"USER alice\r\n")
    reply, buf = read_line(s, buf)
    assert reply.startswith(b"+OK"), reply
    s.close()
    assert "Disconnected for inactivity" not in t.read_log()


def test_stalled_stls_handshake_ends_after_one_timeout(make_tpops, cert):
    """A client that says STLS and never handshakes holds its slot for
    CommandTimeout, not twice that (no -ERR queued that cannot be sent,
    and no second wait for it). POP3S handshakes have their own deadline
    from accept (handoff.c)."""
    t = make_tpops(CommandTimeout=3, **tls_settings(cert))
    t.start()
    times = []
    for _ in range(2):
        s = socket.create_connection((HOST, t.port), timeout=20)
        buf = b""
        _, buf = read_line(s, buf)
        s.sendall(b"STLS\r\n")
        reply, buf = read_line(s, buf)
        assert reply.startswith(b"+OK"), reply
        start = time.monotonic()
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        times.append(time.monotonic() - start)
        s.close()
    assert max(times) < 5.0, times  # 6 s before: the timeout ran twice
    assert min(times) >= 2.5, times
