"""Bad input gets -ERR and the session goes on; floods are cut off
without the daemon's memory growing."""
import random
import socket
import time

MESSAGE = b"Subject: keep me\n\nbody\n"


def logged_in(client_for, t):
    t.store("alice@example.com", MESSAGE)
    c = client_for(t)
    c.login()
    return c


def assert_goes_on(c, state):
    """The session still works: one command that must succeed."""
    if state == "transaction":
        assert c.cmd("NOOP") == b"+OK"
    else:
        assert c.cmd("CAPA").startswith(b"+OK")
        c.multiline()


def assert_err(c, line, state):
    reply = c.cmd(line)
    assert reply.startswith(b"-ERR "), (line, reply)
    # a clear text after -ERR, on one line
    assert len(reply) > 5 and b"\n" not in reply and b"\r" not in reply
    assert_goes_on(c, state)


BAD_NUMBERS = [b"0", b"-1", b"4294967297", b"4294967296", b"99999999999999999999",
               b"abc", b"1abc", b"+1", b"0x1", b"1.0", b"\xff"]


def test_bad_numbers(tpops, client_for):
    c = logged_in(client_for, tpops)
    for n in BAD_NUMBERS:
        for command in [b"RETR %s", b"DELE %s", b"LIST %s", b"UIDL %s", b"TOP %s 0",
                        b"TOP 1 %s"]:
            line = command % n
            if line == b"TOP 1 0":
                continue  # valid
            assert_err(c, line, "transaction")
    # 4294967297 = 2^32 + 1 must not wrap round to message 1: nothing was
    # deleted and message 1 is intact
    assert c.cmd("STAT") == b"+OK 1 %d" % len(MESSAGE.replace(b"\n", b"\r\n"))
    assert c.cmd("RETR 1").startswith(b"+OK")
    assert c.multiline() == [b"Subject: keep me", b"", b"body"]
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()
    d = client_for(tpops)
    d.login()
    assert d.cmd("STAT").startswith(b"+OK 1 ")


def test_extra_and_missing_arguments(tpops, client_for):
    tpops.store("alice@example.com", MESSAGE)
    c = client_for(tpops)
    for line in [b"USER", b"USER a b", b"APOP bob", b"APOP a b c", b"CAPA x", b"QUIT now",
                 b"STLS x", b"PASS"]:
        assert_err(c, line, "authorization")
    c.login()
    for line in [b"STAT 1", b"NOOP x", b"RSET 1", b"QUIT x", b"RETR", b"RETR 1 2", b"DELE",
                 b"DELE 1 1", b"TOP", b"TOP 1", b"TOP 1 2 3", b"LIST 1 2", b"UIDL 1 2",
                 b"CAPA x"]:
        assert_err(c, line, "transaction")
    # nothing above quit or deleted anything
    assert c.cmd("STAT").startswith(b"+OK 1 ")


def test_wrong_state_commands(tpops, client_for):
    tpops.store("alice@example.com", MESSAGE)
    c = client_for(tpops)
    for line in [b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 0",
                 b"UIDL", b"XTND XLIST", b"AUTH NOSUCH"]:
        assert_err(c, line, "authorization")
    c.login()
    for line in [b"USER alice", b"PASS secret", b"APOP a 0123", b"AUTH PLAIN", b"STLS",
                 b"HELO x"]:
        assert_err(c, line, "transaction")


def test_junk_lines(tpops, client_for):
    rng = random.Random(1939)
    for state in ("authorization", "transaction"):
        if state == "authorization":
            c = client_for(tpops)
        else:
            c = logged_in(client_for, tpops)
        junk = [b"", b" ", b"   ", b"\t", b"NOOP\x00", b"\x00", b"NO\x00OP", b"US\x00ER alice",
                b"\x00\x00\x00\x00", b"\r", b"\x1b[2J", b"\xff\xfe\xfd", b"GET / HTTP/1.0",
                b"RETR\t1", b"X" * 300, b"NOOP " + b"A" * 300, b"PASS " + b"p" * 400]
        for _ in range(10):
            junk.append(bytes(rng.choice([b for b in range(256) if b not in (10, 13)])
                              for _ in range(rng.randrange(1, 200))))
        for line in junk:
            assert_err(c, line, state)
        # bare LF line ends are accepted too, and an overlong line that
        # arrives in small pieces is refused once, at its end
        for piece in [b"A" * 100] * 5:
            c.send(piece)
            time.sleep(0.01)
        reply = c.cmd(b"")
        assert reply.startswith(b"-ERR"), reply
        assert_goes_on(c, state)
        # overlong lines pipelined with good ones: one -ERR each, in order
        c.send(b"Y" * 300 + b"\r\nCAPA\r\n" + b"Z" * 10000 + b"\r\nCAPA\r\n")
        for _ in range(2):
            assert c.line().startswith(b"-ERR")
            assert c.line().startswith(b"+OK")
            assert b"UIDL" in c.multiline()
    tpops.assert_alive()
    # the server still serves everyone
    fresh = client_for(tpops)
    fresh.login("bob", "pw")


def test_many_bad_commands_do_not_kill_the_server(tpops, client_for):
    """A client that sends nothing but junk is eventually disconnected;
    the daemon is not."""
    c = client_for(tpops)
    c.send(b"JUNK\r\n" * 500)
    replies = []
    try:
        while True:
            replies.append(c.line())
    except (EOFError, ConnectionResetError):
        pass
    assert replies and all(r.startswith(b"-ERR") for r in replies), replies[-3:]
    assert len(replies) <= 501
    tpops.assert_alive()
    client_for(tpops).login()


def flood(port, total, chunk=b"A" * 65536):
    """Sends up to total octets without a line end; returns the octets
    sent before the server cut the connection, or None if it never did."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    sent = 0
    try:
        s.recv(512)  # greeting
        while sent < total:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return sent
    finally:
        s.close()
    # everything was accepted: was the connection closed at least?
    return None


def test_flood_without_line_end_is_cut_off(tpops, client_for):
    # warm up: the first floods create the buffers and allocator pools
    # that later ones reuse
    for _ in range(3):
        assert flood(tpops.port, 64 << 20) is not None
    before = tpops.rss_kib()
    cut = []
    for _ in range(8):
        cut.append(flood(tpops.port, 64 << 20))
    assert None not in cut, cut
    # cut off long before 64 MiB went through
    assert max(cut) < 8 << 20, cut
    tpops.assert_alive()
    grown = tpops.rss_kib() - before
    assert grown < 4096, f"RSS grew by {grown} KiB"
    # the daemon still serves
    client_for(tpops).login()


def test_flood_in_transaction_keeps_nothing(tpops, client_for):
    c = logged_in(client_for, tpops)
    assert c.cmd("DELE 1").startswith(b"+OK")
    try:
        for _ in range(1024):
            c.send(b"B" * 65536)
        raise AssertionError("64 MiB without a line end were accepted")
    except (BrokenPipeError, ConnectionResetError):
        pass
    c.close()
    # the cut session deleted nothing, and released its lock
    deadline = time.time() + 10
    while True:
        d = client_for(tpops)
        assert d.cmd("USER alice").startswith(b"+OK")
        reply = d.cmd("PASS secret")
        if reply.startswith(b"+OK") or time.time() > deadline:
            break
        assert reply.startswith(b"-ERR [IN-USE]"), reply
        time.sleep(0.1)
    assert reply.startswith(b"+OK"), reply
    assert d.cmd("STAT").startswith(b"+OK 1 ")
