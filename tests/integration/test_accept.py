"""Every accepted connection counts against MaxConnections and
MaxConnectionsPerIP from accept on: while it waits for its PROXY header
(ProxyProtocol) and while it is in its TLS handshake (POP3S), not only once
its session starts. The wait for a PROXY header, and a POP3S handshake, are
each bounded by one absolute timeout from accept, however slowly the client
trickles in; SIGTERM ends the connections still waiting. Clients bind source
addresses in 127.0.0.0/8 to be different clients."""
import select
import socket
import time

from pop3tls import cert, client_context, tls_settings  # noqa: F401
from test_ops import launch, v1, with_mail

TOO_MANY = b"-ERR [SYS/TEMP] Too many connections"
# One I/O thread: connections are then counted in the order they connect.
# With several, two threads may accept connections 3 and 4 and count them
# the other way round, and which one a test expects refused would be luck.
ONE_LOOP = {"IOThreads": 1}
PROXY_HEADER_TIMEOUT = 10  # src/proxy_wait.h


def connect(port, source, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


def answer(sock, wait=3.0):
    """What the server sent before closing, or None when it still holds the
    connection open after `wait` seconds without a word."""
    data = b""
    deadline = time.time() + wait
    while True:
        left = deadline - time.time()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return None if not data else data
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data + b"<RST>"
        if not chunk:
            return data
        data += chunk


def classify(socks, quiet=1.0, limit=7.0, expect_refused=0):
    """(held, refused-with-TOO_MANY) among socks that sent nothing: a
    refusal comes at accept, so once expect_refused of them have been
    refused and no other has become readable for `quiet` seconds, the ones
    still silent are held (all within `limit`, well within the PROXY header
    timeout; a loaded machine may take a while to accept them all)."""
    readable = set()
    end = time.time() + limit
    last_change = time.time()
    while time.time() < end and (len(readable) < expect_refused or
                                 time.time() - last_change < quiet):
        pending = [s for s in socks if s not in readable]
        if not pending:
            break
        ready = select.select(pending, [], [], 0.2)[0]
        if ready:
            readable.update(ready)
            last_change = time.time()
    for s in readable:
        got = answer(s)
        assert got is not None and got.startswith(TOO_MANY), got
    return len(socks) - len(readable), len(readable)


def first_line(sock, wait=10):
    """The server's first line, b"" when it closed without one."""
    data = b""
    sock.settimeout(wait)
    while b"\r\n" not in data:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def proxied_greeting(port, source, client):
    s = connect(port, source)
    try:
        s.sendall(v1(client))
        return first_line(s)
    finally:
        s.close()


def eventually(check, deadline=10):
    end = time.time() + deadline
    while not check():
        assert time.time() < end, "timed out"
        time.sleep(0.1)


def test_proxy_header_waits_count_from_accept(make_tpops):
    t = launch(with_mail(make_tpops(**ONE_LOOP, ProxyProtocol="yes", MaxConnections=6,
                                    MaxConnectionsPerIP=3)))
    silent = [connect(t.port, "127.0.0.2") for _ in range(3)]
    # the three wait for their header; a fourth from that address is over
    # MaxConnectionsPerIP and told so
    over = connect(t.port, "127.0.0.2")
    assert answer(over) == TOO_MANY + b", try again later\r\n"
    over.close()
    assert classify(silent, quiet=0.5) == (3, 0)
    silent += [connect(t.port, "127.0.0.3") for _ in range(3)]
    # six wait: MaxConnections is reached, for a proxied client too
    assert answer(connect(t.port, "127.0.0.4")).startswith(TOO_MANY)
    assert proxied_greeting(t.port, "127.0.0.5", "203.0.113.7").startswith(TOO_MANY)
    for s in silent[:3]:
        s.close()
    # the slots come back once the waiting connections are gone
    eventually(lambda: proxied_greeting(t.port, "127.0.0.5", "203.0.113.7")
               .startswith(b"+OK tpops ready"))
    for s in silent[3:]:
        s.close()
    assert "connection refused: limit reached" in t.read_log()
    t.assert_alive()


def test_many_silent_connections_are_held_to_the_limit(make_tpops):
    """The reported case: with a limit of 40, 200 connections that never
    send their header were all held."""
    t = launch(with_mail(make_tpops(**ONE_LOOP, ProxyProtocol="yes", MaxConnections=40,
                                    MaxConnectionsPerIP=1000)))
    socks = [connect(t.port, "127.0.0.%d" % (2 + i % 8)) for i in range(200)]
    try:
        held, refused = classify(socks, expect_refused=160)
        assert (held, refused) == (40, 160)
    finally:
        for s in socks:
            s.close()
    eventually(lambda: proxied_greeting(t.port, "127.0.0.5", "203.0.113.7")
               .startswith(b"+OK tpops ready"))
    t.assert_alive()


def test_proxy_header_timeout_is_absolute(make_tpops):
    t = launch(with_mail(make_tpops(**ONE_LOOP, ProxyProtocol="yes", MaxConnections=1)))
    header = v1("2001:db8:ffff:ffff:ffff:ffff:ffff:7", "2001:db8::1", 65000, 65001)
    drip = connect(t.port, "127.0.0.2", timeout=30)
    started = time.time()
    # the dripping connection holds the only slot
    assert answer(connect(t.port, "127.0.0.3")).startswith(TOO_MANY)
    closed_at = None
    try:
        for octet in header:  # one octet every 0.5 s: the header needs 40 s
            try:
                drip.sendall(bytes([octet]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.time()
                break
            if select.select([drip], [], [], 0.5)[0]:
                got = drip.recv(4096)
                assert got == b"", got  # closed without a word
                closed_at = time.time()
                break
        assert closed_at is not None, "the header was taken after %d s" % (time.time() - started)
    except ConnectionResetError:
        closed_at = time.time()
    finally:
        drip.close()
    # at the bound from accept (with room for a loaded machine), not later
    assert PROXY_HEADER_TIMEOUT - 1 <= closed_at - started <= PROXY_HEADER_TIMEOUT + 6, \
        closed_at - started
    assert "PROXY header: none within 10 s" in t.read_log()
    # and its slot is free again
    eventually(lambda: proxied_greeting(t.port, "127.0.0.3", "203.0.113.7")
               .startswith(b"+OK tpops ready"))
    t.assert_alive()


def closed_at_once(sock):
    """True when the server closed the connection without a word."""
    return answer(sock) == b""


def test_tls_handshakes_count_from_accept(make_tpops, cert):
    t = make_tpops(**tls_settings(cert, **ONE_LOOP, MaxConnections=3, MaxConnectionsPerIP=2))
    t.add_user("bob", "pw")
    t.start()
    tls_port = t.settings["TLS_Port"]
    # TCP connected to POP3S, no ClientHello: in the handshake
    stuck = [connect(tls_port, "127.0.0.2") for _ in range(2)]
    assert closed_at_once(connect(tls_port, "127.0.0.2"))
    assert answer(connect(t.port, "127.0.0.2")).startswith(TOO_MANY)
    stuck.append(connect(tls_port, "127.0.0.3"))
    # (one listener's connections are counted in order; two listeners'
    # may be taken in either order, so the plain port is asked only once
    # a refusal on the POP3S port shows the handshakes are counted)
    assert closed_at_once(connect(tls_port, "127.0.0.4"))
    assert answer(connect(t.port, "127.0.0.5")).startswith(TOO_MANY)
    assert classify(stuck, quiet=0.5) == (3, 0)
    stuck.pop(0).close()

    def tls_works():
        try:
            with client_context(cert).wrap_socket(connect(tls_port, "127.0.0.6"),
                                                  server_hostname="tpops.test") as s:
                return s.recv(512).startswith(b"+OK tpops ready")
        except (OSError, EOFError):
            return False
    eventually(tls_works)
    for s in stuck:
        s.close()
    t.assert_alive()


def test_proxy_then_tls_handshake_counts_under_the_named_client(make_tpops, cert):
    t = launch(with_mail(make_tpops(**tls_settings(cert, **ONE_LOOP, ProxyProtocol="yes",
                                                   MaxConnectionsPerIP=1))))
    tls_port = t.settings["TLS_Port"]
    # a header, then no ClientHello: counted under 203.0.113.7 from now on
    first = connect(tls_port, "127.0.0.2")
    first.sendall(v1("203.0.113.7"))
    time.sleep(0.5)
    second = connect(tls_port, "127.0.0.3")
    second.sendall(v1("203.0.113.7"))
    assert closed_at_once(second)
    # the proxy's own address is not held by the first one any more
    other = connect(tls_port, "127.0.0.2")
    other.sendall(v1("203.0.113.8"))
    assert answer(other, wait=1) is None  # in its handshake, held
    for s in (first, second, other):
        s.close()
    t.assert_alive()


def test_sigterm_closes_connections_waiting_for_their_header(make_tpops):
    """They count as open connections, so SIGTERM must end them at once
    rather than wait out its grace period for them."""
    t = launch(with_mail(make_tpops(**ONE_LOOP, ProxyProtocol="yes")))
    silent = [connect(t.port, "127.0.0.2") for _ in range(3)]
    assert classify(silent, quiet=0.5) == (3, 0)
    started = time.time()
    t.proc.send_signal(15)
    assert t.proc.wait(timeout=30) == 0
    assert time.time() - started < 5, time.time() - started
    for s in silent:
        assert answer(s, wait=1) == b""  # closed without a word
        s.close()
    assert "sessions still open" not in t.read_log()


def client_hello():
    """The first flight of a real TLS client, as octets."""
    import ssl
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="tpops.test")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


TLS_HANDSHAKE_TIMEOUT = 30  # src/tpops_limits.h


def test_pop3s_handshake_timeout_is_absolute(make_tpops, cert):
    """A ClientHello that trickles in, one octet a second, holds its slot
    until the handshake deadline from accept, not longer."""
    t = make_tpops(**tls_settings(cert, **ONE_LOOP, MaxConnections=1))
    t.add_user("bob", "pw")
    t.start()
    tls_port = t.settings["TLS_Port"]
    hello = client_hello()
    assert len(hello) > 2 * TLS_HANDSHAKE_TIMEOUT
    drip = connect(tls_port, "127.0.0.2", timeout=60)
    started = time.time()
    assert closed_at_once(connect(tls_port, "127.0.0.3"))  # the slot is held
    closed_at = None
    try:
        for octet in hello:
            try:
                drip.sendall(bytes([octet]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.time()
                break
            if select.select([drip], [], [], 1.0)[0]:
                try:
                    got = drip.recv(4096)
                except ConnectionResetError:
                    got = b""
                assert got == b"", got
                closed_at = time.time()
                break
    finally:
        drip.close()
    assert closed_at is not None, "the handshake went on for %d s" % (time.time() - started)
    assert TLS_HANDSHAKE_TIMEOUT - 1 <= closed_at - started <= TLS_HANDSHAKE_TIMEOUT + 10, \
        closed_at - started
    assert "no TLS handshake within 30 s" in t.read_log()

    def tls_works():
        try:
            with client_context(cert).wrap_socket(connect(tls_port, "127.0.0.4"),
                                                  server_hostname="tpops.test") as s:
                return s.recv(512).startswith(b"+OK tpops ready")
        except (OSError, EOFError):
            return False
    eventually(tls_works)
    t.assert_alive()
