"""Database: mysql against a real MariaDB server (backends/mysql.py): the
upgrade of a database that the original TPOPS filled, leases shared by two
servers, MariaDB going away and coming back, SQL metacharacters, quota
under concurrent deliveries, a 100 MiB message streamed in pieces, the
move back to the first MySQL_Server host, and conflicts run again on the
same connection.
The protocol suite runs against this backend as well (the `tpops`
fixture); this file holds what only MySQL has."""
import contextlib
import hashlib
import os
import re
import subprocess
import threading
import time

import pytest

from backends import mysql
from conftest import Client, free_port

SEED_SCHEMA = os.path.join(os.path.dirname(__file__), "..", "..", "sql", "tpops-seed-sql.txt")


def make_mysql(make_tpops, name="tpops", **settings):
    return make_tpops(name, backend="mysql", **settings)


def retr_raw(c, command):
    """Sends RETR/TOP; returns (status line, the message as sent, without
    dot-stuffing and the terminating line). Bare CRs are kept."""
    c.send(command.encode() + b"\r\n")
    status = c.line()
    if not status.startswith(b"+OK"):
        return status, None
    data = bytearray(c.buf)
    c.buf = b""
    while not (data.endswith(b"\r\n.\r\n") or data == b".\r\n"):
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed in a multi-line reply")
        data += chunk
    body = bytes(data[:-3])
    return status, re.sub(rb"(^|\r\n)\.", rb"\1", body)


# ---- the upgrade of a seed-era database ----

# Messages as Postfix handed them to the original tpops-store.
SEED_MESSAGES = [
    b"Subject: plain\n\nHello\n.leading dot\n..two dots\n",
    # Shift_JIS: several characters have 0x5C (backslash) as second byte
    b"Subject: " + "日本語の件名".encode("shift_jis") + b"\nX-SJIS: "
    + "表示ソ十".encode("shift_jis") + b"\n\n" + "本文です。表ソ十能\n".encode("shift_jis")
    + "二行目\n".encode("shift_jis"),
    # invalid UTF-8 and NUL bytes in header and body
    b"Subject: bad \xff\xfe\xc3\x28 utf8\nX-Nul: a\x00b\n\nbody \x00 with NUL \xc0\xaf\xed\xa0\x80\n",
    # bare CRs, a CR before CRLF, a CR at the very end
    b"Subject: cr\nX-CR: a\rb\n\nline with \r bare CR\nend with CR\r\r\ntrailing CR\r",
    b"Subject: all octets\n\n" + bytes(range(256)) + b"\n" + bytes(range(255, -1, -1)) + b"\n",
    b"Subject: crlf\r\nFrom: a@example.com\r\n\r\nbody line 1\r\nbody line 2\r\n",
    b"Subject: header only\nX-A: b\n",
    b"Subject: no final newline\n\nlast line without newline",
    b"Subject: nothing else",
    b"Subject: crosses pieces\n\n" + b"".join(b"%06d " % i + b"x" * 92 + b"\n" for i in range(3000)),
    b"Subject: quotes ' \" \\ %\n\nbody ' \" \\ % -- ;\n",
]


def seed_split(raw):
    """What the original tpops-store stored: (header, body, size)."""
    msg = raw.replace(b"\r\n", b"\n")
    size = len(msg.replace(b"\n", b"\r\n"))
    i = msg.find(b"\n\n")
    if i >= 0:
        return msg[:i + 1], msg[i + 2:], size
    return msg, b"", size


def crlf(s):
    return s.replace(b"\n", b"\r\n")


def seed_wire(header, body):
    """What the original server sent for RETR (tpops_sub.rb retr): the
    header and body with LF made CRLF, joined by a CRLF; a last line
    without a line end gets its CRLF before the terminating line."""
    out = crlf(header) + b"\r\n" + crlf(body)
    return out if out.endswith(b"\n") else out + b"\r\n"


def seed_top(header, body, n):
    """tpops_sub.rb top: the header, CRLF, the first n lines of the body."""
    lines = re.split(rb"(?<=\n)", body)
    out = crlf(header) + b"\r\n" + crlf(b"".join(lines[:n]))
    return out if out.endswith(b"\n") else out + b"\r\n"


def build_seed_database():
    """A database as the original TPOPS left it: its sql.txt in a latin1
    database, rows written the way its tools wrote them (latin1 connection,
    MySQL of 2001 had no strict mode). Returns (name, uid, expected) with
    expected = [(id, timestamp digits, header, body)] in arrival order."""
    name = mysql.new_database(charset="latin1")
    schema = open(SEED_SCHEMA).read()
    schema = "\n".join(line for line in schema.splitlines() if not line.startswith("#"))
    with mysql.server().connect(name, charset="latin1") as c, c.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        for statement in schema.split(";"):
            if statement.strip():
                cur.execute(statement)
        cur.execute("INSERT INTO user (login, passwd, mail, maildir, quota) "
                    "VALUES ('tommy', 'tommypw', 'tommy@example.com', '', 0)")
        uid = cur.lastrowid
        cur.execute("INSERT INTO user (login, passwd, mail, maildir, quota) "
                    "VALUES ('other', 'x', 'other@example.com', '', 0)")
        # a lock left behind by a crashed original server
        cur.execute("INSERT INTO locks (uid, timestamp) VALUES (%s, '2001-07-11 00:00:00')", (uid,))
        expected = []
        for i, raw in enumerate(SEED_MESSAGES):
            header, body, size = seed_split(raw)
            stamp = "0000-00-00 00:00:00" if i == 3 else f"2001-07-11 07:53:{59 - i:02d}"
            # tpops-store: insert into msg (uid,header,body,size,timestamp)
            cur.execute("INSERT INTO msg (uid, header, body, size, timestamp) "
                        "VALUES (%s, %s, %s, %s, %s)", (uid, header, body, size, stamp))
            digits = "0" if i == 3 else re.sub(r"\D", "", stamp)
            expected.append((cur.lastrowid, digits, header, body))
            # msgno as the original left it after some session
            cur.execute("UPDATE msg SET msgno = %s WHERE id = %s", (-(i + 1), cur.lastrowid))
        cur.execute("DELETE FROM msg WHERE id = %s", (expected[-1][0],))  # read and deleted
        deleted_id = expected.pop()[0]
    expected.sort(key=lambda e: (e[1] != "0", e[1], e[0]))  # ORDER BY timestamp, id
    return name, uid, expected, deleted_id


def check_seed_mailbox(t, uid, expected):
    c = Client(t.port)
    c.login("tommy", "tommypw")
    wires = [seed_wire(h, b) for _, _, h, b in expected]
    assert c.cmd("STAT") == b"+OK %d %d" % (len(wires), sum(map(len, wires)))
    c.send(b"UIDL\r\n")
    assert c.line().startswith(b"+OK")
    assert c.multiline() == [b"%d %d.%d.%s" % (n, e[0], uid, e[1].encode())
                             for n, e in enumerate(expected, 1)]
    for n, ((_, _, h, b), wire) in enumerate(zip(expected, wires), 1):
        assert c.cmd(f"LIST {n}") == b"+OK %d %d" % (n, len(wire))
        status, got = retr_raw(c, f"RETR {n}")
        assert status.startswith(b"+OK"), status
        assert got == wire, f"message {n}: {SEED_MESSAGES[[e[2] for e in expected].index(h)][:30]!r}"
        status, top = retr_raw(c, f"TOP {n} 1")  # as the original cut it
        assert top == seed_top(h, b, 1), f"TOP {n} 1"
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()



@contextlib.contextmanager
def mariadb_global(name, value):
    """The test server's global variable name set to value for the length
    of the block (a worker's session takes it when it connects), then put
    back."""
    srv = mysql.server()
    with srv.connect() as c, c.cursor() as cur:
        cur.execute(f"SELECT @@GLOBAL.{name}")
        saved = cur.fetchone()[0]
        cur.execute(f"SET GLOBAL {name} = %s", (value,))
    try:
        yield
    finally:
        with srv.connect() as c, c.cursor() as cur:
            cur.execute(f"SET GLOBAL {name} = %s", (saved,))

def test_dbinit_refuses_logins_that_differ_only_in_case(make_tpops):
    """A user table made with a case-sensitive collation may hold "alice"
    and "ALICE" (or "älice") as two users, which the login rule and the
    upgraded table's case-insensitive unique key make one: tpops-dbinit
    names them and says what to do instead of failing on a duplicate key,
    changes nothing, and once they are apart gives the table a collation
    that follows the rule."""
    t = make_mysql(make_tpops)
    t.sql("ALTER TABLE `user` MODIFY login VARCHAR(255) CHARACTER SET utf8mb4 "
          "COLLATE utf8mb4_bin NOT NULL")
    t.tool("tpops-useradd", "alice", "secret", "alice@example.com")
    t.tool("tpops-useradd", "ALICE", "other", "alice2@example.org")
    t.tool("tpops-useradd", "\u00e4lice", "third", "alice3@example.org")
    t.tool("tpops-useradd", "bob", "pw", "bob@example.com")
    uids = dict(t.sql("SELECT login, uid FROM `user`"))
    # the daemon does not serve such a table
    with pytest.raises(AssertionError) as refused:
        t.start()
    assert "letter case" in str(refused.value) and "tpops-dbinit" in str(refused.value)
    t.proc = None
    t.log.close()
    r = t.tool("tpops-dbinit", check=False)
    assert r.returncode == 65, r  # EX_DATAERR
    err = r.stderr.decode()
    for login in ("alice", "ALICE", "\u00e4lice"):
        assert f'"{login}" (uid {uids[login]})' in err, err
    assert "bob" not in err and "Duplicate entry" not in err, err
    assert "tpops-dbinit again" in err, err
    collation = ("SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
                 "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'user' AND COLUMN_NAME = 'login'")
    assert t.sql(collation) == [("utf8mb4_bin",)]  # nothing was changed
    t.sql("UPDATE `user` SET login = 'alice2' WHERE uid = %s" % uids["ALICE"])
    t.sql("UPDATE `user` SET login = 'alice3' WHERE uid = %s" % uids["\u00e4lice"])
    t.tool("tpops-dbinit")
    assert not t.sql(collation)[0][0].endswith("_bin")
    t.start()
    c = Client(t.port)
    assert c.cmd("USER ALICE").startswith(b"+OK")
    assert c.cmd("PASS secret").startswith(b"+OK")
    c.cmd("QUIT")
    c.close()


def test_dbinit_names_latin1_logins_that_utf8mb4_folds_together(make_tpops):
    """A seed-era latin1 table may hold "alice" and "\u00e4lice" (latin1's
    Swedish collation tells them apart, utf8mb4's does not): the upgrade
    names them instead of failing on the new unique key, and changes
    nothing."""
    t = make_mysql(make_tpops)
    t.sql("ALTER TABLE `user` MODIFY login VARCHAR(255) CHARACTER SET latin1 "
          "COLLATE latin1_swedish_ci NOT NULL")
    t.tool("tpops-useradd", "alice", "secret", "alice@example.com")
    t.tool("tpops-useradd", "\u00e4lice", "other", "alice2@example.org")
    uids = dict(t.sql("SELECT login, uid FROM `user`"))
    r = t.tool("tpops-dbinit", check=False)
    assert r.returncode == 65, r
    err = r.stderr.decode()
    for login in ("alice", "\u00e4lice"):
        assert f'"{login}" (uid {uids[login]})' in err, err
    assert t.sql("SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE "
                 "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'user' "
                 "AND COLUMN_NAME = 'login'") == [("latin1",)]


def test_seed_database_upgrades_in_place(make_tpops):
    name, uid, expected, deleted_id = build_seed_database()
    # tpops-dbinit runs as the Tpops is made: it upgrades in place
    t = make_mysql(make_tpops, MySQL_DB=name)
    types = dict(t.sql("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                       "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'msg'"))
    assert types["header"] == "longblob" and types["body"] == "longblob"
    assert types["timestamp"] == "datetime"  # not DATETIME(6): the UIDLs stay
    # the seed's UNIQUE (uid) of locks became its primary key (Galera needs one)
    assert t.sql("SELECT GROUP_CONCAT(COLUMN_NAME) FROM information_schema.STATISTICS "
                 "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'locks' "
                 "AND INDEX_NAME = 'PRIMARY'") == [("uid",)]
    assert "tpops_seed_format" not in types
    assert t.sql("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                 "AND TABLE_NAME = 'msg'") == [("InnoDB",)]
    # stored: exactly the octets the original sent, header ending in CRLF CRLF
    rows = t.sql("SELECT id, header, body, size FROM msg ORDER BY id")
    assert len(rows) == len(expected)
    for (id_, header, body, size), e in zip(rows, sorted(expected)):
        assert id_ == e[0]
        assert header + body == crlf(e[2]) + b"\r\n" + crlf(e[3])
    t.start()
    check_seed_mailbox(t, uid, expected)

    # APOP with the seed's plaintext password
    c = Client(t.port)
    stamp = re.search(rb"<[^>]*>", c.greeting).group(0)
    digest = hashlib.md5(stamp + b"tommypw").hexdigest()
    assert c.cmd(f"APOP tommy {digest}").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()

    # a second run changes nothing
    r = t.tool("tpops-dbinit")
    assert b"ready" in r.stdout
    check_seed_mailbox(t, uid, expected)

    # new mail after the switch: ids go on after the seed's (the deleted
    # one included), and an insert that omits msgno works in strict mode
    t.store("tommy@example.com", b"Subject: new\n\nnew mail\n")
    new_id = t.sql("SELECT MAX(id) FROM msg")[0][0]
    assert new_id > deleted_id
    t.sql("INSERT INTO msg (uid, timestamp, header, body, size) VALUES (?, NOW(), ?, ?, ?)",
          (uid, b"Subject: external\r\n\r\n", b"x\r\n", 25))
    c = Client(t.port)
    c.login("tommy", "tommypw")
    assert c.cmd("STAT").startswith(b"+OK %d " % (len(expected) + 2))
    c.cmd("QUIT")
    c.close()


def test_upgrade_refuses_small_packet_without_changing_anything(make_tpops):
    """A seed message whose converted form exceeds max_allowed_packet: the
    upgrade stops with a clear message before altering anything."""
    name = mysql.new_database(charset="latin1")
    schema = "\n".join(l for l in open(SEED_SCHEMA).read().splitlines() if not l.startswith("#"))
    srv = mysql.server()
    with srv.connect(name, charset="latin1") as c, c.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        for statement in schema.split(";"):
            if statement.strip():
                cur.execute(statement)
        cur.execute("INSERT INTO user (login, passwd, mail, maildir, quota) "
                    "VALUES ('tommy', 'tommypw', 'tommy@example.com', '', 0)")
        cur.execute("INSERT INTO msg (uid, header, body, size, timestamp) "
                    "VALUES (1, 'Subject: x\n', REPEAT('\n', 700000), 1400012, NOW())")
    with mariadb_global("max_allowed_packet", 1048576):
        with pytest.raises(AssertionError, match="max_allowed_packet"):
            make_mysql(make_tpops, MySQL_DB=name)
    with srv.connect(name) as c, c.cursor() as cur:
        cur.execute("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                    "DATABASE() AND TABLE_NAME = 'msg' AND COLUMN_NAME = 'header'")
        assert cur.fetchone()[0] == "mediumtext"


# ---- leases shared by two servers ----

def test_two_servers_share_the_lock_and_a_killed_holder_frees_it(make_tpops):
    a = make_mysql(make_tpops, "a", LockLease=5)
    a.add_user("alice", "secret")
    a.store("alice@example.com", b"Subject: shared\n\nhello\n")
    b = make_mysql(make_tpops, "b", LockLease=5, MySQL_DB=a.settings["MySQL_DB"])
    a.start()
    b.start()
    holder = Client(a.port)
    holder.login()
    other = Client(b.port)
    assert other.cmd("USER alice").startswith(b"+OK")
    assert other.cmd("PASS secret").startswith(b"-ERR [IN-USE]")
    # the lease is renewed while the holder lives
    time.sleep(6)
    assert holder.cmd("NOOP").startswith(b"+OK")
    other = Client(b.port)
    other.cmd("USER alice")
    assert other.cmd("PASS secret").startswith(b"-ERR [IN-USE]")
    # kill -9: nothing releases the lock; its lease runs out
    a.stop(9)
    killed = time.time()
    while True:
        c = Client(b.port)
        c.cmd("USER alice")
        reply = c.cmd("PASS secret")
        if reply.startswith(b"+OK"):
            break
        assert reply.startswith(b"-ERR [IN-USE]"), reply
        assert time.time() - killed < 5 + 3, "the lease did not expire"
        c.close()
        time.sleep(0.25)
    assert time.time() - killed <= 5 + 3
    _, msg = retr_raw(c, "RETR 1")
    assert msg == b"Subject: shared\r\n\r\nhello\r\n"
    c.cmd("QUIT")


def test_seed_era_lock_row_is_stale(make_tpops):
    t = make_mysql(make_tpops)
    t.add_user("alice", "secret")
    uid = t.sql("SELECT uid FROM user WHERE login = 'alice'")[0][0]
    t.sql("INSERT INTO locks (uid, timestamp) VALUES (?, '2001-07-11 00:00:00')", (uid,))
    t.start()
    Client(t.port).login()


# ---- MariaDB going away and coming back ----

def test_mariadb_restart_under_a_session_and_a_delivery(make_tpops):
    t = make_mysql(make_tpops)
    t.add_user("alice", "secret")
    t.add_user("bob", "pw")
    t.store("alice@example.com", b"Subject: one\n\n1\n")
    t.store("alice@example.com", b"Subject: two\n\n2\n")
    t.start()
    session = Client(t.port)
    session.login()
    srv = mysql.server()
    srv.stop()
    try:
        c = Client(t.port)
        c.cmd("USER bob")
        started = time.time()
        assert c.cmd("PASS pw").startswith(b"-ERR [SYS/TEMP]")
        assert time.time() - started < 5
        started = time.time()
        assert t.store("bob@example.com", b"Subject: later\n\nx\n", check=False) == 75
        assert time.time() - started < 10
        assert t.tool("tpops-useradd", "carol", "pw", "carol@example.com", check=False).returncode == 75
        assert session.cmd("NOOP").startswith(b"+OK")
        t.assert_alive()
    finally:
        srv.start()
    # back: logins work at once, without restarting tpops
    c = Client(t.port)
    c.login("bob", "pw")
    c.cmd("QUIT")
    assert t.store("bob@example.com", b"Subject: later\n\nx\n") == 0
    # the session that lived through it reads and deletes
    status, msg = retr_raw(session, "RETR 2")
    assert msg == b"Subject: two\r\n\r\n2\r\n", (status, t.read_log())
    assert session.cmd("DELE 1").startswith(b"+OK")
    assert session.cmd("QUIT").startswith(b"+OK"), t.read_log()
    assert t.sql("SELECT COUNT(*) FROM msg m JOIN user u ON u.uid = m.uid "
                 "WHERE u.login = 'alice'") == [(1,)]
    t.assert_alive()


def test_several_hosts_the_first_down(make_tpops):
    """MySQL_Server lists hosts in order of preference: with nothing
    listening on the first, the tools and the daemon use the second."""
    srv = mysql.server()
    dead = free_port()
    t = make_mysql(make_tpops, MySQL_Server=f"127.0.0.1:{dead}, 127.0.0.1:{srv.port}")
    t.add_user("alice", "secret")
    assert t.store("alice@example.com", b"Subject: s\n\nsecond host\n") == 0
    t.start()
    for _ in range(3):
        c = Client(t.port)
        c.login()
        assert c.cmd("STAT").startswith(b"+OK 1 ")
        assert c.cmd("QUIT").startswith(b"+OK")
        c.close()
    # a host list that does not parse is refused with the reason
    t.stop()
    t.write_config(MySQL_Server="db1:notaport")
    r = t.tool("tpops-users", check=False)
    assert r.returncode != 0 and b"MySQL_Server" in r.stderr, r.stderr


def connection_ids(server, db):
    """The ids of the connections to server that use database db."""
    with server.connect() as c, c.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s "
                    "AND USER = %s ORDER BY ID", (db, mysql.DB_USER))
        return [r[0] for r in cur.fetchall()]


def test_workers_connect_as_the_daemon_starts(make_tpops):
    """Each storage worker has its connection before the first login (which
    then does not wait for one), and twenty logins later the same three
    connections serve them."""
    srv = mysql.server()
    t = make_mysql(make_tpops, Workers=3)
    db = t.settings["MySQL_DB"]
    t.add_user("alice", "secret")
    t.start()
    deadline = time.time() + 10
    while len(connection_ids(srv, db)) < 3 and time.time() < deadline:
        time.sleep(0.05)
    at_start = connection_ids(srv, db)
    assert len(at_start) == 3, (at_start, t.read_log())
    for _ in range(20):
        c = Client(t.port)
        c.login()
        assert c.cmd("QUIT").startswith(b"+OK")
        c.close()
    assert connection_ids(srv, db) == at_start, t.read_log()
    t.stop()


def test_starts_and_serves_when_the_database_comes_later(make_tpops):
    """MariaDB down as the daemon starts: it starts anyway and says so, each
    worker's connection attempt fails with a warning, a login answers
    [SYS/TEMP]; once MariaDB is up the next login works, without a
    restart or a SIGHUP."""
    server = mysql.MariaDB()  # a server of its own, to stop and start
    try:
        t = make_mysql(make_tpops, Workers=2)
        db = t.settings["MySQL_DB"]
        server.create_database(db)
        t.write_config(MySQL_Server=f"127.0.0.1:{server.port}")
        t.tool("tpops-dbinit")
        t.add_user("alice", "secret")
        server.stop()
        t.start()
        log = t.read_log()
        assert "logins fail with [SYS/TEMP] until it works" in log, log
        deadline = time.time() + 10
        while log.count("storage worker: no database connection yet") < 2 and \
                time.time() < deadline:
            time.sleep(0.1)
            log = t.read_log()
        assert log.count("storage worker: no database connection yet") == 2, log
        c = Client(t.port)
        assert c.cmd("USER alice").startswith(b"+OK")
        reply = c.cmd("PASS secret")
        assert reply.startswith(b"-ERR [SYS/TEMP]"), reply
        c.close()
        server.start()
        c = Client(t.port)
        c.login()
        assert c.cmd("QUIT").startswith(b"+OK")
        c.close()
        t.stop()
    finally:
        server.destroy()


def test_moves_back_to_the_first_host_after_failback_time(make_tpops):
    """After a failover the worker's connection moves back to the first
    MySQL_Server host at its first use once MySQL_FailbackTime has passed
    since it connected, and not before: two real MariaDB servers, the
    first down when the worker connects and up again long before then."""
    failback = 10
    second = mysql.server()
    first = mysql.MariaDB()  # a server of its own, the preferred host
    try:
        t = make_mysql(make_tpops, Workers=1, MySQL_FailbackTime=failback)
        db = t.settings["MySQL_DB"]
        t.add_user("alice", "secret")  # on the second host
        # the same database and user on the first
        first.create_database(db)
        t.write_config(MySQL_Server=f"127.0.0.1:{first.port}")
        t.tool("tpops-dbinit")
        t.add_user("alice", "secret")
        first.stop()
        t.write_config(MySQL_Server=f"127.0.0.1:{first.port} 127.0.0.1:{second.port}")
        # the worker's connection: made as the daemon starts, on the second host
        before_connect = time.monotonic()
        t.start()

        def login():
            c = Client(t.port)
            c.login()
            assert c.cmd("QUIT").startswith(b"+OK")
            c.close()

        login()
        connected = time.monotonic()
        on_second = connection_ids(second, db)
        assert len(on_second) == 1, on_second
        first.start()
        up = time.monotonic() - before_connect
        # until MySQL_FailbackTime has passed it stays, with the first host up
        stayed = 0
        while True:
            login()
            if time.monotonic() >= before_connect + failback:
                break
            assert connection_ids(first, db) == [], t.read_log()
            assert connection_ids(second, db) == on_second, t.read_log()
            assert "now using" not in t.read_log()
            stayed += 1
            time.sleep(0.5)
        assert stayed >= 3, f"the first host took {up:.1f} s to start"
        # its first use after that time moves it back
        time.sleep(max(0.0, connected + failback + 0.2 - time.monotonic()))
        login()
        assert len(connection_ids(first, db)) == 1, t.read_log()
        assert connection_ids(second, db) == [], t.read_log()
        assert f"mysql: now using 127.0.0.1:{first.port}" in t.read_log()
        print(f"first host up {up:.1f} s after the worker connected; "
              f"{stayed} logins stayed on the second host; moved back at "
              f"{time.monotonic() - before_connect:.1f} s (MySQL_FailbackTime {failback})")
        t.stop()
    finally:
        first.destroy()


def conflict_in_quit(make_tpops, make_conflict, prepare=None):
    """A QUIT whose transaction fails with a conflict that make_conflict
    brings about (a connection of its own holding the message's row):
    the QUIT answers +OK, deletes the message once, and ran again on the
    worker's connection (same connection id, nothing reconnected).
    Returns the daemon's log."""
    srv = mysql.server()
    t = make_mysql(make_tpops, Workers=1, LogLevel="debug")
    db = t.settings["MySQL_DB"]
    t.add_user("alice", "secret")
    t.store("alice@example.com", b"Subject: one\n\n1\n")
    t.store("alice@example.com", b"Subject: two\n\n2\n")
    uid = t.sql("SELECT uid FROM user WHERE login = 'alice'")[0][0]
    first_id = t.sql("SELECT MIN(id) FROM msg WHERE uid = ?", (uid,))[0][0]
    t.start()
    c = Client(t.port, timeout=60)
    c.login()
    worker = connection_ids(srv, db)
    assert len(worker) == 1, worker
    assert c.cmd("DELE 1").startswith(b"+OK")
    replies = []
    with srv.connect(db) as blocker, blocker.cursor() as cur:
        if prepare:
            prepare(cur)
        cur.execute("BEGIN")
        cur.execute("SELECT id FROM msg WHERE id = %s FOR UPDATE", (first_id,))
        quit = threading.Thread(target=lambda: replies.append(c.cmd("QUIT")))
        quit.start()
        make_conflict(srv, cur, worker[0], uid)
        cur.execute("ROLLBACK")
    quit.join(60)
    assert replies and replies[0].startswith(b"+OK"), (replies, t.read_log())
    remaining = t.sql("SELECT id FROM msg WHERE uid = ?", (uid,))
    assert len(remaining) == 1 and remaining[0][0] != first_id, remaining
    assert connection_ids(srv, db) == worker, t.read_log()
    log = t.read_log()
    assert "trying the next database host" not in log and "now using" not in log, log
    t.stop()
    return log


def wait_for_delete(srv, connection_id):
    """Until the connection runs QUIT's DELETE, which waits for the row
    lock the test holds (INNODB_TRX's trx_state does not say so reliably
    on MariaDB 10.11; the process list does)."""
    deadline = time.time() + 20
    while time.time() < deadline:
        with srv.connect() as c, c.cursor() as cur:
            cur.execute("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s",
                        (connection_id,))
            row = cur.fetchone()
            if row and row[0] and row[0].startswith("DELETE FROM msg"):
                time.sleep(0.2)
                return
        time.sleep(0.05)
    with srv.connect() as c, c.cursor() as cur:
        cur.execute("SELECT ID, USER, DB, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST")
        raise AssertionError(f"connection {connection_id} did not wait for the lock: "
                             f"{cur.fetchall()}")


def test_deadlock_runs_again_on_the_same_connection(make_tpops):
    """1213: the QUIT holds the lease row and waits for the message's row;
    the other transaction, heavier, then asks for the lease row: InnoDB
    rolls the QUIT back (a deadlock), and it runs again."""

    def ballast_table(cur):
        cur.execute("CREATE TABLE ballast (n INT PRIMARY KEY) ENGINE=InnoDB")

    def deadlock(srv, cur, worker, uid):
        wait_for_delete(srv, worker)
        # heavier than the QUIT's, so that InnoDB picks the QUIT as victim
        cur.execute("INSERT INTO ballast SELECT seq FROM seq_1_to_2000")
        cur.execute("SELECT uid FROM locks WHERE uid = %s FOR UPDATE", (uid,))

    log = conflict_in_quit(make_tpops, deadlock, ballast_table)
    assert re.search(r"Deadlock found.*running it again \(attempt 2\)", log), log


def test_lock_wait_timeout_runs_again_on_the_same_connection(make_tpops):
    """1205: the QUIT waits for the message's row longer than
    innodb_lock_wait_timeout, and runs again until the row is free."""
    with mariadb_global("innodb_lock_wait_timeout", 1):
        def hold(srv, cur, worker, uid):
            wait_for_delete(srv, worker)
            time.sleep(3)  # the QUIT's wait times out at least once

        log = conflict_in_quit(make_tpops, hold)
    assert re.search(r"Lock wait timeout exceeded.*running it again \(attempt 2\)", log), log


def test_unix_socket(make_tpops):
    t = make_mysql(make_tpops, MySQL_Server="localhost", MySQL_Socket=mysql.server().socket)
    t.add_user("alice", "secret")
    t.store("alice@example.com", b"Subject: s\n\nsocket\n")
    t.start()
    c = Client(t.port)
    c.login()
    assert c.cmd("STAT").startswith(b"+OK 1 ")


# ---- SQL metacharacters ----

METACHARS = ["o'brien", "back\\slash", "per%cent", "dash--dash", "semi;colon", 'dq"uote',
             "under_score", "x' OR '1'='1", "y\\' OR 1=1 -- "]


def test_sql_metacharacters_only_fail_to_log_in(make_tpops):
    t = make_mysql(make_tpops)
    t.add_user("alice", "secret")
    # users whose login, password and address hold metacharacters work
    for i, meta in enumerate(METACHARS[:7]):
        login = meta.replace(" ", "")
        t.add_user(login, f"pw{meta}", f"u{i}{meta.replace(' ', '')}@example.com", "--plain")
        t.store(f"u{i}{meta.replace(' ', '')}@example.com", b"Subject: m\n\nmeta\n")
    t.start()
    for meta in METACHARS[:7]:
        c = Client(t.port)
        login = meta.replace(" ", "")
        c.login(login, f"pw{meta}")
        assert c.cmd("STAT").startswith(b"+OK 1 ")
        c.cmd("QUIT")
        c.close()
    users_before = t.sql("SELECT COUNT(*) FROM user")
    # injection attempts are unknown users or wrong passwords
    attempts = [(m, "secret") for m in METACHARS if " " not in m] + [
        ("alice", "' OR '1'='1"), ("alice", "x' OR 1=1 -- "), ("alice", "\\"),
        ("alice", "%"), ("%", "secret"), ("a%", "secret"), ("_lice", "secret"),
        ("alice'--", "secret"), ("alice\\", "secret"),
    ]
    for login, password in attempts:
        c = Client(t.port)
        assert c.cmd(f"USER {login}").startswith(b"+OK")
        assert c.cmd(f"PASS {password}").startswith(b"-ERR"), (login, password)
        c.close()
    for mail in ["%@example.com", "' OR ''='", "alice@example.com' -- ", "\\"]:
        assert t.store(mail, b"Subject: x\n\ny\n", check=False) == 67, mail
    assert t.sql("SELECT COUNT(*) FROM user") == users_before
    Client(t.port).login()
    t.assert_alive()


# ---- quota under concurrent deliveries ----

def test_quota_holds_under_concurrent_deliveries(make_tpops):
    t = make_mysql(make_tpops)
    t.add_user("alice", "secret", None, "--quota", "10000")
    message = b"Subject: q\n\n" + b"x" * 2900 + b"\n"  # 3016 octets on the wire
    results = []

    def deliver():
        results.append(t.store("alice@example.com", message, check=False))
    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [0, 0, 0, 73, 73, 73]
    assert t.sql("SELECT COUNT(*), SUM(size) FROM msg")[0][0] == 3


def test_dbinit_restores_a_negated_quota(make_tpops):
    """An earlier tpops on Galera could leave a quota negated (the claim of
    a delivery committed without its release, docs/mysql.md): it then
    counted nothing. tpops-dbinit restores it and says so; a delivery
    then counts it again."""
    t = make_mysql(make_tpops)
    t.add_user("alice", "secret", None, "--quota", "5000")
    t.add_user("bob", "secret", None, "--quota", "0")
    t.sql("UPDATE `user` SET quota = -quota WHERE login = 'alice'")
    r = t.tool("tpops-dbinit")
    err = r.stderr.decode()
    assert "restored the quota of 1 user(s)" in err, err
    assert t.sql("SELECT login, quota FROM `user` ORDER BY login") == [("alice", 5000), ("bob", 0)]
    again = t.tool("tpops-dbinit").stderr.decode()
    assert "restored" not in again, again
    message = b"Subject: q\n\n" + b"x" * 2900 + b"\n"  # 3016 octets on the wire
    assert t.store("alice@example.com", message, check=False) == 0
    assert t.store("alice@example.com", message, check=False) == 73  # over quota
    assert t.sql("SELECT quota FROM `user` WHERE login = 'alice'") == [(5000,)]


# ---- a large message streams in pieces ----

def test_small_max_allowed_packet_reads_a_piece_in_several_statements(make_tpops):
    """With max_allowed_packet at 64 KiB one statement returns at most
    32 KiB: each 256 KiB piece of a RETR takes several, and the message
    still arrives whole, ending where it ends."""
    t = make_mysql(make_tpops)
    t.add_user("alice", "secret")
    line = b"0123456789abcdefghijklmnopqrstuvwxyz .dot ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    medium = b"Subject: medium\n\n" + line * (600 * 1024 // len(line))
    exact = b"Subject: exact\n\n" + b"x" * (32 * 1024 - len(b"Subject: exact\n\n") - 1) + b"\n"
    small = b"Subject: small\n\nhello\n"
    for m in (medium, exact, small):
        t.store("alice@example.com", m)
    with mariadb_global("max_allowed_packet", 65536):
        t.start()
        c = Client(t.port, timeout=60)
        c.login()
        for i, m in enumerate((medium, exact, small), 1):
            status, got = retr_raw(c, f"RETR {i}")
            assert status == b"+OK %d octets" % len(crlf(m))
            assert got == crlf(m)
        assert c.cmd("QUIT").startswith(b"+OK")


def test_100mib_message_streams_in_pieces(make_tpops):
    t = make_mysql(make_tpops)
    t.add_user("alice", "secret")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_0123456789abcdef\n"
    body = line * (100 * 1024 * 1024 // len(line))
    big = b"Subject: big\n\n" + body
    # a medium one stays in the seed's columns, read with SUBSTRING()
    medium = b"Subject: medium\n\n" + line * (3 * 1024 * 1024 // len(line))
    t.store("alice@example.com", medium)
    t.store("alice@example.com", big)
    parts = t.sql("SELECT m.id, COUNT(p.pos), LENGTH(m.body) FROM msg m "
                  "LEFT JOIN msg_part p ON p.id = m.id GROUP BY m.id ORDER BY m.id")
    assert parts[0][1] == 0 and parts[0][2] > 0
    assert parts[1][1] >= 100 and parts[1][2] == 0
    t.start()
    c = Client(t.port, timeout=60)
    c.login()
    status, got = retr_raw(c, "RETR 1")
    assert got == crlf(medium)
    expect_len = len(crlf(big))
    expect_md5 = hashlib.md5(crlf(big)).hexdigest()
    del big, body
    rss_before = t.rss_kib()
    peak = rss_before
    c.send(b"RETR 2\r\n")
    assert c.line() == b"+OK %d octets" % expect_len
    digest = hashlib.md5()
    tail = b""
    received = 0
    started = time.time()
    next_sample = 0
    data = c.buf
    c.buf = b""
    while True:
        if data:
            # dot-stuffing: every line of the body starts with '0'
            chunk = tail + data
            if chunk.endswith(b"\r\n.\r\n"):
                digest.update(chunk[:-3])
                received += len(chunk) - 3
                break
            keep = chunk[-4:]
            digest.update(chunk[:-4])
            received += len(chunk) - 4
            tail = keep
        if received >= next_sample:
            peak = max(peak, t.rss_kib())
            next_sample += 4 << 20
        data = c.sock.recv(1 << 20)
        assert data, "connection closed"
    elapsed = time.time() - started
    peak = max(peak, t.rss_kib())
    assert received == expect_len
    assert digest.hexdigest() == expect_md5
    growth_mib = (peak - rss_before) / 1024
    print(f"100 MiB RETR from MySQL: {elapsed:.2f} s, daemon RSS growth {growth_mib:.1f} MiB")
    assert growth_mib < 16, f"daemon RSS grew by {growth_mib:.1f} MiB"
    assert c.cmd("QUIT").startswith(b"+OK")
