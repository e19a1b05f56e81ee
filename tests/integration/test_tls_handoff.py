"""The way from accept to a session (src/handoff.c): POP3S handshakes on
their own threads, then sessions spread over the I/O threads; a failed or
silent handshake gives its connection slot back and holds up neither other
clients nor a shutdown."""
import os
import socket
import subprocess
import time

from conftest import TOOL_ASAN, program
from pop3tls import HOST, Pop3, cert, client_context, tls_settings  # noqa: F401 (fixture)

USERS = [f"u{i}" for i in range(8)]


def daemon(make_tpops, cert, **more):
    t = make_tpops(IOThreads=2, **tls_settings(cert, **more))
    for u in USERS:
        t.add_user(u, "pw", None, "--plain")
    t.start()
    return t


def who(t):
    env = dict(os.environ, ASAN_OPTIONS=TOOL_ASAN)
    r = subprocess.run([program("tpops-admin"), "-c", t.conf, "who"], capture_output=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[1].split()[-2:] == ["TLS", "THREAD"], r.stdout
    return [line.split() for line in lines[2:]]


def login(c, user):
    assert c.cmd(f"USER {user}").startswith(b"+OK")
    assert c.cmd("PASS pw").startswith(b"+OK")


def test_sessions_spread_over_the_io_threads(make_tpops, cert):
    """Connections made one after the other, as a burst of clients is,
    are served by both I/O threads, over POP3S as in plain text."""
    t = daemon(make_tpops, cert)
    ctx = client_context(cert)
    clients = []
    # four of a kind in a row: the loops take turns over all connections
    for i, u in enumerate(USERS):
        c = Pop3(t.settings["TLS_Port"], tls=ctx) if i < 4 else Pop3(t.port)
        login(c, u)
        clients.append(c)
    rows = who(t)
    assert len(rows) == len(USERS), rows
    tls_threads = {r[-1] for r in rows if r[-2] == "yes"}
    plain_threads = {r[-1] for r in rows if r[-2] == "no"}
    brief = [(r[0], r[-2], r[-1]) for r in rows]
    assert tls_threads == {"0", "1"}, brief
    assert plain_threads == {"0", "1"}, brief
    for c in clients:
        assert c.cmd("QUIT").startswith(b"+OK")
        c.close()


def test_failed_handshakes_give_their_slot_back(make_tpops, cert):
    """Garbage instead of a ClientHello: the connection ends with one log
    line, and its slot is free again (MaxConnectionsPerIP 3: one more for
    the start-up probe, whose session may still be closing)."""
    t = daemon(make_tpops, cert, MaxConnectionsPerIP=3)
    for _ in range(6):
        with socket.create_connection((HOST, t.settings["TLS_Port"]), timeout=10) as s:
            s.sendall(b"USER nobody\r\n" * 20)
            s.settimeout(10)
            try:  # an alert perhaps, then the end (or a reset: input unread)
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    c = Pop3(t.settings["TLS_Port"], tls=client_context(cert))
    login(c, "u0")
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    assert t.read_log().count("TLS handshake failed") >= 6, t.read_log()


def test_silent_handshakes_block_neither_clients_nor_shutdown(make_tpops, cert):
    """Connections that never send a ClientHello wait on the handshake
    threads: a real client is served meanwhile, and SIGTERM ends them at
    once instead of waiting out the grace period for their slots."""
    t = daemon(make_tpops, cert)
    silent = [socket.create_connection((HOST, t.settings["TLS_Port"]), timeout=10)
              for _ in range(20)]
    started = time.time()
    c = Pop3(t.settings["TLS_Port"], tls=client_context(cert))
    login(c, "u1")
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    assert time.time() - started < 10
    stop_started = time.time()
    assert t.stop() == 0
    # the grace period for open sessions is 10 s
    assert time.time() - stop_started < 8, t.read_log()
    assert "still open after" not in t.read_log()
    for s in silent:
        s.close()
