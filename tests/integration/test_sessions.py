"""How sessions end and what they leave behind: timeouts, QUIT, dropped
connections, the maildrop lock and its lease, failed-login delays, and
storage work kept off the I/O threads."""
import re
import select
import socket
import sqlite3
import struct
import time

import pytest


def answered(c):
    """True when the server has sent c something not yet read."""
    return bool(c.buf) or bool(select.select([c.sock], [], [], 0)[0])


def remaining(t, client_for, user="alice", password="secret", deadline=15):
    """Logs in as soon as the maildrop is free (an ended session may still
    be releasing its lock) and returns the Subject lines of what is there."""
    end = time.time() + deadline
    while True:
        c = client_for(t)
        assert c.cmd(f"USER {user}").startswith(b"+OK")
        reply = c.cmd(f"PASS {password}")
        if reply.startswith(b"+OK"):
            break
        assert reply.startswith(b"-ERR [IN-USE]"), reply
        assert time.time() < end, "the maildrop stayed locked"
        c.close()
        time.sleep(0.1)
    count = int(c.cmd("STAT").split()[1])
    subjects = []
    for i in range(1, count + 1):
        assert c.cmd(f"TOP {i} 0").startswith(b"+OK")
        subjects += [l for l in c.multiline() if l.startswith(b"Subject:")]
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    return subjects


def installation(t, alice=2, bob=1):
    t.add_user("alice", "secret")
    t.add_user("bob", "pw", None, "--plain")
    for i in range(alice):
        t.store("alice@example.com", b"Subject: alice %d\n\nbody\n" % i)
    for i in range(bob):
        t.store("bob@example.com", b"Subject: bob %d\n\nbody\n" % i)
    return t.start()


def alice_subjects(n=2):
    return [b"Subject: alice %d" % i for i in range(n)]


# -- timeouts --

BIG = b"Subject: big\n\n" + (b"z" * 998 + b"\n") * 8000


def test_command_timeout_and_connection_keep_time(make_tpops, client_for):
    t = installation(make_tpops(CommandTimeout=2, ConnectionKeepTime=4))
    t.add_user("carol", "pw")
    t.store("carol@example.com", BIG)
    start = time.time()
    unauthenticated = client_for(t)
    idle = client_for(t)
    idle.login()
    assert idle.cmd("DELE 1").startswith(b"+OK")
    idle_since = time.time()
    busy = client_for(t)
    busy_start = time.time()
    busy.login("bob", "pw")
    assert busy.cmd("DELE 1").startswith(b"+OK")
    # a client that reads a big message slowly is not idle either
    reader = client_for(t)
    reader_start = time.time()
    reader.login("carol", "pw")
    assert reader.cmd("RETR 1").startswith(b"+OK")
    received = reader.buf
    closed = {}
    while len(closed) < 4 and time.time() < start + 12:
        for name, c in (("unauthenticated", unauthenticated), ("idle", idle)):
            if name not in closed and c.closed(timeout=0.05):
                closed[name] = time.time()
        if "reader" not in closed:
            reader.sock.settimeout(0.05)
            try:
                for _ in range(4):
                    chunk = reader.sock.recv(65536)
                    if not chunk:
                        closed["reader"] = time.time()
                        break
                    received += chunk
            except (socket.timeout, TimeoutError):
                pass
            except ConnectionResetError:
                closed["reader"] = time.time()
        if "busy" not in closed:
            try:
                busy.send(b"NOOP\r\n")
                if busy.closed(timeout=0.2):
                    closed["busy"] = time.time()
            except (BrokenPipeError, ConnectionResetError):
                closed["busy"] = time.time()
    assert set(closed) == {"unauthenticated", "idle", "busy", "reader"}, closed
    # idle sessions end after CommandTimeout, before ConnectionKeepTime
    assert 1.5 <= closed["unauthenticated"] - start < 3.5, closed["unauthenticated"] - start
    assert 1.5 <= closed["idle"] - idle_since < 3.5, closed["idle"] - idle_since
    # busy sessions are never idle, and end after ConnectionKeepTime
    assert 3.5 <= closed["busy"] - busy_start < 5.5, closed["busy"] - busy_start
    assert closed["reader"] - reader_start >= 3.5, closed["reader"] - reader_start
    lines = busy.buf.split(b"\r\n")
    assert all(l == b"+OK" for l in lines[:-2]), lines
    expected = BIG.replace(b"\n", b"\r\n")
    if received.startswith(expected + b".\r\n"):
        # the reader kept up and the RETR ended before the limit: only
        # then may the closing -ERR follow, after the whole answer
        rest = received[len(expected) + 3:]
        assert rest in (b"", b"-ERR Connection time limit reached, closing connection\r\n"), rest
    else:
        # the message was cut: what came is a prefix of it, with no text
        # of the server's glued on, and never the final dot
        assert 0 < len(received) <= len(expected)
        assert expected.startswith(received), received[-100:]
    # none of the ended sessions deleted anything
    assert remaining(t, client_for) == alice_subjects()
    assert remaining(t, client_for, "bob", "pw") == [b"Subject: bob 0"]
    t.assert_alive()


# -- QUIT and dropped connections --

def test_quit_commits_deletions(make_tpops, backend, client_for):
    t = installation(make_tpops(backend=backend), alice=3)
    c = client_for(t)
    c.login()
    assert c.cmd("DELE 2").startswith(b"+OK")
    reply = c.cmd("QUIT")
    assert reply.startswith(b"+OK"), reply
    assert c.closed()
    assert remaining(t, client_for) == [b"Subject: alice 0", b"Subject: alice 2"]


def test_rset_then_quit_deletes_nothing(make_tpops, backend, client_for):
    t = installation(make_tpops(backend=backend))
    c = client_for(t)
    c.login()
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 2").startswith(b"+OK")
    assert c.cmd("RSET").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()
    assert remaining(t, client_for) == alice_subjects()


@pytest.mark.parametrize("how", ["close", "half-close", "reset"])
def test_dropped_connection_deletes_nothing(make_tpops, backend, client_for, how):
    t = installation(make_tpops(backend=backend))
    c = client_for(t)
    c.login()
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 2").startswith(b"+OK")
    if how == "half-close":
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed()
    elif how == "reset":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    assert remaining(t, client_for) == alice_subjects()
    t.assert_alive()


def test_quit_then_close_without_reading(make_tpops, backend, client_for):
    """Outlook sends QUIT and closes at once: the deletions still count."""
    t = installation(make_tpops(backend=backend), alice=4)
    # after reading every reply up to the QUIT
    c = client_for(t)
    c.login()
    assert c.cmd("DELE 1").startswith(b"+OK")
    c.send(b"QUIT\r\n")
    c.close()
    assert remaining(t, client_for) == [b"Subject: alice %d" % i for i in (1, 2, 3)]
    # DELE and QUIT in one write, nothing read after the login
    c = client_for(t)
    c.login()
    c.send(b"DELE 1\r\nDELE 3\r\nQUIT\r\n")
    c.close()
    assert remaining(t, client_for) == [b"Subject: alice 2"]
    # the whole session in one write, not even the greeting read (so the
    # close resets the connection); wait for its logout line before
    # looking, or the check could take the maildrop first
    def logouts():
        return len(re.findall(r"logout: user=alice .*dele=1/", t.read_log()))

    before = logouts()
    s = socket.create_connection(("127.0.0.1", t.port))
    s.sendall(b"USER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n")
    s.shutdown(socket.SHUT_WR)
    s.close()
    deadline = time.time() + 10
    while logouts() == before and time.time() < deadline:
        time.sleep(0.05)
    assert remaining(t, client_for) == []


# -- the maildrop lock --

def test_lock_lease_is_renewed_and_expires_after_kill_9(make_tpops, client_for):
    t = installation(make_tpops(LockLease=5), alice=2)
    c = client_for(t)
    c.login()
    assert c.cmd("DELE 1").startswith(b"+OK")
    uid = t.sql("SELECT uid FROM user WHERE login = 'alice'")[0][0]
    (owner, first), = t.sql("SELECT owner, expires FROM locks WHERE uid = ?", (uid,))
    assert first > time.time()
    # renewed while the session lives (every lease/3 seconds)
    deadline = time.time() + 4
    while time.time() < deadline:
        (_, expires), = t.sql("SELECT owner, expires FROM locks WHERE uid = ?", (uid,))
        if expires > first:
            break
        time.sleep(0.1)
    assert expires > first, "the lease was not renewed"
    other = client_for(t)
    assert other.cmd("USER alice").startswith(b"+OK")
    assert other.cmd("PASS secret").startswith(b"-ERR [IN-USE]")
    # a crash leaves the lock behind ...
    assert t.stop(9) == -9
    t.start()
    rows = t.sql("SELECT owner, expires FROM locks WHERE uid = ?", (uid,))
    assert rows and rows[0][0] == owner
    c = client_for(t)
    assert c.cmd("USER alice").startswith(b"+OK")
    assert c.cmd("PASS secret").startswith(b"-ERR [IN-USE]")
    # ... that expires by itself, and the crashed session deleted nothing
    expires = rows[0][1]
    deadline = time.time() + 10
    while True:
        assert c.cmd("USER alice").startswith(b"+OK")
        reply = c.cmd("PASS secret")
        if not reply.startswith(b"-ERR [IN-USE]") or time.time() > deadline:
            break
        time.sleep(0.2)
    assert reply.startswith(b"+OK"), reply
    assert time.time() >= expires - 1
    assert c.cmd("STAT").startswith(b"+OK 2 ")
    assert c.cmd("QUIT").startswith(b"+OK")
    assert t.sql("SELECT count(*) FROM locks") == [(0,)]


def test_lock_released_when_session_ends(make_tpops, backend, client_for):
    t = installation(make_tpops(backend=backend))
    for end in ("QUIT", "close"):
        c = client_for(t)
        c.login()
        if end == "QUIT":
            assert c.cmd("QUIT").startswith(b"+OK")
            assert c.closed()
            # the lock is gone by the time QUIT is answered
            d = client_for(t)
            d.login()
            assert d.cmd("QUIT").startswith(b"+OK")
            assert d.closed()
        else:
            c.close()
            assert remaining(t, client_for, deadline=3) == alice_subjects()


# -- failed logins --

def test_failed_login_delay_does_not_delay_others(make_tpops, client_for):
    t = installation(make_tpops(AuthFailureDelay=2, IOThreads=1, Workers=2))
    slow = {}
    for name, user in (("wrong password", "alice"), ("unknown user", "nosuchuser")):
        c = client_for(t)
        assert c.cmd(f"USER {user}").startswith(b"+OK")
        c.send(b"PASS wrong\r\nCAPA\r\n")
        slow[name] = (c, time.time())
    # meanwhile, another session is served at once, from start to end
    begin = time.time()
    other = client_for(t)
    assert other.cmd("CAPA").startswith(b"+OK")
    other.multiline()
    other.login("bob", "pw")
    assert other.cmd("STAT").startswith(b"+OK 1 ")
    assert other.cmd("QUIT").startswith(b"+OK")
    assert time.time() - begin < 1.0, time.time() - begin
    for name, (c, sent) in slow.items():
        assert not answered(c), f"{name}: answered before the delay"
    replies = {}
    for name, (c, sent) in slow.items():
        reply = c.line()
        elapsed = time.time() - sent
        # the second failure from the same address waits twice as long
        # (the brute-force slowdown doubles per recent failure)
        assert 1.8 <= elapsed < 5, (name, elapsed)
        assert reply.startswith(b"-ERR [AUTH]"), reply
        replies[name] = reply
        # the command pipelined behind the failed PASS comes after it
        assert c.line().startswith(b"+OK")
        assert b"USER" in c.multiline()
        c.login()
        c.close()
    assert replies["wrong password"] == replies["unknown user"]


# -- storage work runs on the workers --

def test_locked_database_does_not_block_io(make_tpops, client_for):
    """While another process holds the SQLite write lock, a logged-in
    session and a new connection are answered at once; a login, which
    needs the database, fails with [SYS/TEMP] after the busy timeout."""
    t = installation(make_tpops(IOThreads=1, Workers=4), alice=1)
    session = client_for(t)
    session.login()
    holder = sqlite3.connect(t.settings["SQLite_Path"], timeout=1, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        waiting = client_for(t, timeout=15)
        assert waiting.cmd("USER bob").startswith(b"+OK")
        waiting.send(b"PASS pw\r\n")
        login_sent = time.time()
        for _ in range(3):
            begin = time.time()
            assert session.cmd("NOOP") == b"+OK"
            assert session.cmd("STAT").startswith(b"+OK 1 ")
            fresh = client_for(t)
            assert fresh.greeting.startswith(b"+OK")
            assert fresh.cmd("CAPA").startswith(b"+OK")
            assert b"TOP" in fresh.multiline()
            assert time.time() - begin < 1.0, time.time() - begin
            fresh.close()
            assert not answered(waiting), "the login did not wait for the database"
            time.sleep(0.5)
        reply = waiting.line()
        elapsed = time.time() - login_sent
        assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
        assert 4.0 <= elapsed < 9, elapsed
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # the database is back: the same session logs in now
    assert waiting.cmd("USER bob").startswith(b"+OK")
    assert waiting.cmd("PASS pw").startswith(b"+OK")
    assert session.cmd("QUIT").startswith(b"+OK")
