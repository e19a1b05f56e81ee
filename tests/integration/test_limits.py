"""Limits against abuse: connections per client address and in total
(MaxConnectionsPerIP, MaxConnections: -ERR [SYS/TEMP] and close), and the
growing delay of failed logins per address and per login, which must not
slow other clients down. Clients bind source addresses in 127.0.0.0/8
(all loopback on Linux) to be different clients."""
import re
import threading
import time

import pytest

from pop3tls import Pop3, b64, cert, client_context, tls_settings  # noqa: F401

TOO_MANY = b"-ERR [SYS/TEMP] Too many connections"


def refused(port, source, **kw):
    """Connects; True when the server refused with [SYS/TEMP] and closed."""
    c = Pop3(port, source=source, greeting=False, **kw)
    try:
        first = c.line()
        if first.startswith(b"+OK"):
            c.close()
            return False
        assert first.startswith(TOO_MANY), first
        assert c.rest() == b""
        return True
    finally:
        c.close()


def open_all(port, sources, deadline=5):
    """Opens one connection per source address, all greeted with +OK.
    Retried briefly: a connection closed just before (the fixture's start
    probe, a previous step) may not be counted out yet."""
    end = time.time() + deadline
    while True:
        conns = []
        try:
            for s in sources:
                c = Pop3(port, source=s)
                conns.append(c)
                assert c.greeting.startswith(b"+OK"), c.greeting
            return conns
        except AssertionError:
            for c in conns:
                c.close()
            if time.time() > end:
                raise
            time.sleep(0.05)


def eventually(check, deadline=5):
    end = time.time() + deadline
    while not check():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def test_connections_per_address(make_tpops, cert):
    t = make_tpops(**tls_settings(cert, MaxConnectionsPerIP=3))
    t.add_user("bob", "pw", None, "--plain")
    t.start()
    conns = open_all(t.port, ["127.0.0.3"] * 3)
    # the fourth from that address is refused and closed
    assert refused(t.port, "127.0.0.3")
    # on the POP3S port too (the limit is per address, not per port)
    with pytest.raises((OSError, EOFError)):
        Pop3(t.settings["TLS_Port"], source="127.0.0.3", tls=client_context(cert))
    # other addresses are not affected
    with Pop3(t.port, source="127.0.0.4") as other:
        assert other.greeting.startswith(b"+OK")
        assert other.login("bob", "pw").startswith(b"+OK")
        assert other.cmd("QUIT").startswith(b"+OK")
    # the three still work
    for c in conns:
        assert c.cmd("CAPA").startswith(b"+OK")
        c.multiline()
    # after one closes, a new one from that address is served again
    conns.pop().close()
    eventually(lambda: not refused(t.port, "127.0.0.3"))
    assert re.search(r"connection refused: limit reached", t.read_log())
    for c in conns:
        c.close()


def test_total_connections(make_tpops):
    t = make_tpops(MaxConnections=4)
    t.start()
    sources = [f"127.0.0.{i}" for i in range(11, 15)]
    conns = open_all(t.port, sources)
    assert refused(t.port, "127.0.0.20")
    assert refused(t.port, "127.0.0.11")
    conns.pop(0).close()
    eventually(lambda: not refused(t.port, "127.0.0.21"))
    for c in conns:
        assert c.cmd("NOOP").startswith(b"-ERR")  # alive, AUTHORIZATION state
        c.close()


# -- brute force --

def timed_failure(port, source, user, password="wrong"):
    """Seconds from PASS to its -ERR [AUTH]."""
    with Pop3(port, source=source) as c:
        assert c.cmd(f"USER {user}").startswith(b"+OK")
        start = time.monotonic()
        reply = c.cmd(f"PASS {password}")
        took = time.monotonic() - start
        assert reply == b"-ERR [AUTH] Authentication failed", reply
        return took


def timed_login(port, source, user, password):
    with Pop3(port, source=source) as c:
        start = time.monotonic()
        reply = c.login(user, password)
        took = time.monotonic() - start
        assert reply.startswith(b"+OK"), reply
        assert c.cmd("QUIT").startswith(b"+OK")
        c.rest()
        return took


@pytest.fixture
def slow(make_tpops):
    t = make_tpops(AuthFailureDelay=1, AuthFailureDelayMax=8)
    t.add_user("alice", "secret")
    t.add_user("bob", "pw", None, "--plain")
    t.add_user("carol", "c-pw", None, "--plain")
    return t.start()


def test_failures_get_growing_delays(slow):
    t = slow
    d1 = timed_failure(t.port, "127.0.0.1", "alice")
    d2 = timed_failure(t.port, "127.0.0.1", "alice")
    assert 0.9 <= d1 < 1.6, d1
    assert 1.9 <= d2 < 2.6, d2
    # the owner logging in from elsewhere meanwhile is not slowed down,
    # and does not wipe the guesser's record
    assert timed_login(t.port, "127.0.0.2", "alice", "secret") < 0.5
    d3 = timed_failure(t.port, "127.0.0.1", "alice")
    assert 3.9 <= d3 < 4.6, d3
    log = t.read_log()
    lines = re.findall(r"auth failed: user=alice from=127\.0\.0\.1 method=USER reason=wrong password",
                       log)
    assert len(lines) == 3, log


def test_delay_is_capped_and_hanging_up_gains_nothing(make_tpops):
    """AuthFailureDelayMax caps the delay. Once an address has a few
    recent failures, its checks are spaced out before they run, right
    password or wrong: a guesser who hangs up instead of waiting for the
    answer finds its next attempt held until the slot has passed.

    The lower bounds are the guarantee and exact; the upper ones only tell
    the steps apart (1 s, capped at 2 s where 4 s would follow uncapped),
    with room for a loaded machine."""
    t = make_tpops(AuthFailureDelay=1, AuthFailureDelayMax=2)
    t.add_user("bob", "pw", None, "--plain")
    t.start()
    delays = [timed_failure(t.port, "127.0.0.5", "nobody-here") for _ in range(3)]
    assert 0.9 <= delays[0] < 1.8 and all(1.9 <= d < 3.4 for d in delays[1:]), delays
    # a fourth guess, hung up at once: its check takes the next slot
    with Pop3(t.port, source="127.0.0.5") as c:
        c.send(b"USER nobody-here\r\nPASS wrong\r\n")
        assert c.line() == b"+OK Send PASS"
    # so a right password from there waits for the slot after it
    # (held for one slot of 2 s, not two)
    assert 1.5 <= timed_login(t.port, "127.0.0.5", "bob", "pw") < 3.4
    # another address is not held back (a hold is a slot: 2 s)
    assert timed_login(t.port, "127.0.0.6", "bob", "pw") < 1.2
    t.assert_alive()
    log = t.read_log()
    assert len(re.findall(r"auth failed: user=nobody-here from=127\.0\.0\.5 method=USER "
                          r"reason=unknown user", log)) == 4


def test_success_forgets_own_failures(make_tpops):
    """A user who mistyped and then got it right starts afresh; a typing
    mistake or two do not hold up the next login."""
    t = make_tpops(AuthFailureDelay=1, AuthFailureDelayMax=8)
    t.add_user("bob", "pw", None, "--plain")
    t.start()
    assert 0.9 <= timed_failure(t.port, "127.0.0.7", "bob") < 1.8
    assert timed_login(t.port, "127.0.0.7", "bob", "pw") < 0.9
    assert 0.9 <= timed_failure(t.port, "127.0.0.7", "bob") < 1.8  # not 2: forgotten


def test_burst_does_not_slow_other_clients(make_tpops):
    """Many wrong passwords at once from 127.0.0.1, each held in its
    delay: a good login from 127.0.0.2 is answered at once, and a first
    failure elsewhere gets only the base delay."""
    t = make_tpops(AuthFailureDelay=1, AuthFailureDelayMax=2)
    t.add_user("alice", "secret")
    t.add_user("bob", "pw", None, "--plain")
    t.add_user("carol", "c-pw", None, "--plain")
    t.start()
    errors = []

    def attacker(i):
        try:
            with Pop3(t.port, source="127.0.0.1", timeout=50) as c:
                assert c.cmd("USER carol").startswith(b"+OK")
                assert c.cmd(f"PASS guess-{i}").startswith(b"-ERR [AUTH]")
                # and a SASL guess in the same connection
                assert c.cmd("AUTH PLAIN " + b64(f"\0carol\0guess-{i}")) \
                    .startswith(b"-ERR [AUTH]")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=attacker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    time.sleep(0.5)  # the burst is on, its sessions waiting in their delays
    assert timed_login(t.port, "127.0.0.2", "bob", "pw") < 0.5
    assert timed_login(t.port, "127.0.0.2", "alice", "secret") < 0.5
    # AUTH too
    with Pop3(t.port, source="127.0.0.2") as c:
        start = time.monotonic()
        assert c.cmd("AUTH PLAIN " + b64("\0bob\0pw")).startswith(b"+OK")
        assert time.monotonic() - start < 0.5
        assert c.cmd("QUIT").startswith(b"+OK")
        c.rest()
    # a first failure from another address, for another login: base delay
    assert 0.9 <= timed_failure(t.port, "127.0.0.3", "dave") < 1.6
    # the guesses are spaced 2 s apart once past the grace: 8 of them
    for th in threads:
        th.join(60)
    assert not errors, errors
    log = t.read_log()
    assert re.search(r"auth failed: user=carol from=127\.0\.0\.1 method=USER reason=wrong password",
                     log)
    assert re.search(r"auth failed: user=carol from=127\.0\.0\.1 method=PLAIN reason=wrong password",
                     log)
    assert re.search(r"auth failed: user=dave from=127\.0\.0\.3 method=USER reason=unknown user",
                     log)


def test_held_attempt_does_not_delay_shutdown(make_tpops):
    """SIGTERM while an attempt is held by the brute-force delay: the
    daemon stops at once, it does not wait out the hold."""
    t = make_tpops(AuthFailureDelay=8, AuthFailureDelayMax=60)
    t.add_user("bob", "pw", None, "--plain")
    t.start()
    guessers = []
    for _ in range(3):  # three failures at once (each answer waits, not the count)
        c = Pop3(t.port, source="127.0.0.9")
        c.send(b"USER bob\r\nPASS wrong\r\n")
        guessers.append(c)
    eventually(lambda: t.read_log().count("auth failed: user=bob from=127.0.0.9") == 3)
    held = Pop3(t.port, source="127.0.0.9")
    held.send(b"USER bob\r\nPASS pw\r\n")
    assert held.line() == b"+OK Send PASS"
    time.sleep(0.3)
    start = time.monotonic()
    assert t.stop() == 0
    assert time.monotonic() - start < 3
    assert held.rest().startswith(b"-ERR [SYS/TEMP]")
    for c in guessers + [held]:
        c.close()
