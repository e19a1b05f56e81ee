"""tpops on a real 3-node MariaDB Galera cluster on loopback (cluster.py):
two daemons on different nodes (A prefers node 1, B node 2; each lists all
three hosts), deliveries through node 3, and what must hold there:

- tpops-dbinit under wsrep_mode=REQUIRED_PRIMARY_KEY, on a new database,
  one made by earlier tpops (locks with a UNIQUE key) and one made by the
  original TPOPS;
- simultaneous logins of one user on both daemons: one +OK, one [IN-USE];
  the conflicts run again on the same connections (no reconnect counted);
- concurrent sessions (DELE + QUIT) and deliveries: no [SYS/TEMP], every
  tpops-store exits 0, no reconnect;
- quota under concurrent deliveries through two nodes;
- kill -9 of the node daemon A uses, under load: logins through A succeed
  again within 10 s; the node restarts and rejoins; SIGHUP moves A back;
- a node outside the primary component (1047) is skipped;
- kill -9 of a daemon holding a lock: the other serves the user once
  LockLease has passed;
- the ledger: every delivery that exited 0 is present exactly once or was
  deleted by a QUIT that answered +OK, and nothing else is there.

Run with `make check-galera` (CI runs it under a time limit); it takes
about a minute and a half, half of it the cluster's start (two full state
transfers by mariabackup) and the killed node's return. The tests of this file depend on each other's order."""
import os
import re
import signal
import sys
import tempfile
import shutil
import threading
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

from backends.mysql import DB_PASS, DB_USER  # noqa: E402
from cluster import Cluster  # noqa: E402
from conftest import Client, Tpops, free_port, make_dir  # noqa: E402

LEASE = 6
SEED_SCHEMA = os.path.join(HERE, "..", "..", "sql", "tpops-seed-sql.txt")
MYSQL_SCHEMA = os.path.join(HERE, "..", "..", "sql", "mysql.sql")


class World:
    """The cluster, the installations and the ledger, shared by the tests."""

    def __init__(self):
        self.cluster = Cluster()
        self.dir = make_dir(tempfile.mkdtemp(prefix="tpops-galera-test-", dir="/tmp"))
        self.db = "tpops_galera"
        with self.node(0).connect() as c, c.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db}")
        self.installs = []
        self.lock = threading.Lock()
        self.delivered = set()    # tokens whose tpops-store exited 0
        self.store_failures = []  # (token, exit status, stderr)
        self.deleted = set()      # tokens deleted by a QUIT that answered +OK
        self.tokens = 0

    def node(self, i):
        return self.cluster.nodes[i]

    def install(self, name, hosts, db=None, **settings):
        """A tpops installation whose MySQL_Server lists the nodes hosts
        (indexes), in that order; tpops-dbinit runs as it is made."""
        t = Tpops(os.path.join(self.dir, name), "sqlite", **{
            "Database": "mysql",
            "MySQL_Server": " ".join(self.node(i).address for i in hosts),
            "MySQL_User": DB_USER,
            "MySQL_Pass": DB_PASS,
            "MySQL_DB": db or self.db,
            "LockLease": LEASE,
            **settings,
        })
        self.installs.append(t)
        return t

    def token(self):
        with self.lock:
            self.tokens += 1
            return f"tok{self.tokens:05d}"

    def deliver(self, store, mail):
        """One delivery through the store installation; the ledger keeps
        its token when tpops-store exits 0."""
        tok = self.token()
        r = store.tool("tpops-store", mail, input=f"Subject: {tok}\n\nbody {tok}\n".encode(),
                       check=False)
        with self.lock:
            if r.returncode == 0:
                self.delivered.add(tok)
            else:
                self.store_failures.append((tok, r.returncode, r.stderr.decode(errors="replace")))
        return r.returncode

    def sql(self, statement, params=(), node=0, db=None):
        with self.node(node).connect(db or self.db) as c, c.cursor() as cur:
            cur.execute("SET SESSION wsrep_sync_wait = 1")
            cur.execute(statement, params)
            return [tuple(r) for r in cur.fetchall()]

    def destroy(self):
        for t in self.installs:
            t.stop()
        logs = [t.read_log() for t in self.installs if os.path.exists(t.log_path)]
        self.cluster.destroy()
        shutil.rmtree(self.dir, ignore_errors=True)
        return logs


@pytest.fixture(scope="module")
def world():
    w = World()
    yield w
    logs = w.destroy()
    for log in logs:
        assert "ERROR: AddressSanitizer" not in log, log
        assert "runtime error:" not in log, log


def session(port, user, password, deleting, timeout=30):
    """One POP3 session: login, read every message's Subject (TOP n 0),
    DELE those deleting() picks, QUIT. Returns (login reply, QUIT reply or
    None, tokens marked deleted)."""
    c = Client(port, timeout=timeout)
    try:
        c.cmd(f"USER {user}")
        reply = c.cmd(f"PASS {password}")
        if not reply.startswith(b"+OK"):
            return reply, None, []
        c.send(b"LIST\r\n")
        assert c.line().startswith(b"+OK")
        numbers = [int(line.split()[0]) for line in c.multiline()]
        marked = []
        for n in numbers:
            c.send(f"TOP {n} 0\r\n".encode())
            status = c.line()
            assert status.startswith(b"+OK"), status
            head = b"\n".join(c.multiline())
            m = re.search(rb"Subject: (tok\d+)", head)
            assert m, head
            if deleting(m.group(1).decode()):
                assert c.cmd(f"DELE {n}").startswith(b"+OK")
                marked.append(m.group(1).decode())
        return reply, c.cmd("QUIT"), marked
    finally:
        c.close()


# ---- tpops-dbinit under REQUIRED_PRIMARY_KEY ----

def primary_key(w, db):
    return w.sql("SELECT GROUP_CONCAT(COLUMN_NAME) FROM information_schema.STATISTICS "
                 "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'locks' AND INDEX_NAME = 'PRIMARY'",
                 (db,), db="information_schema")[0][0]


def test_cluster_runs_with_required_primary_key(world):
    w = world
    assert w.cluster.size() == 3
    for node in w.cluster.nodes:
        with node.connect() as c, c.cursor() as cur:
            cur.execute("SELECT @@wsrep_mode")
            assert "REQUIRED_PRIMARY_KEY" in cur.fetchone()[0]
    # what the issue saw: a table without a primary key is refused
    with w.node(0).connect(w.db) as c, c.cursor() as cur:
        with pytest.raises(Exception):
            cur.execute("CREATE TABLE nokey (a INT)")


def test_dbinit_new_database(world):
    w = world
    # the main database: tpops-dbinit (run as the installation is made)
    # creates every table, through node 2
    w.install("dbinit-new", [1, 0, 2])
    assert primary_key(w, w.db) == "uid"
    tables = {r[0] for r in w.sql("SHOW TABLES")}
    assert {"user", "msg", "msg_part", "locks"} <= tables, tables
    keyed = {r[0] for r in w.sql("SELECT TABLE_NAME FROM information_schema.STATISTICS "
                                 "WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME = 'PRIMARY'")}
    assert keyed == tables, tables - keyed


def create_with_mode_off(w, db, statements, charset="utf8mb4"):
    """Tables as an older installation made them, before the cluster
    required primary keys (wsrep_mode is a node's global setting)."""
    with w.node(0).connect() as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db} CHARACTER SET {charset}")
        cur.execute("SET GLOBAL wsrep_mode = ''")
        try:
            cur.execute(f"USE {db}")
            cur.execute("SET SESSION sql_mode = ''")
            for s in statements:
                cur.execute(s)
        finally:
            cur.execute("SET GLOBAL wsrep_mode = 'REQUIRED_PRIMARY_KEY'")


def schema_statements(path):
    text = "\n".join(line for line in open(path).read().splitlines()
                     if not line.startswith(("#", "--")))
    return [s for s in text.split(";") if s.strip()]


def test_dbinit_upgrades_earlier_tpops_database(world):
    w = world
    old = [s.replace("PRIMARY KEY (uid)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                     "UNIQUE KEY uid (uid)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
           if "CREATE TABLE IF NOT EXISTS locks" in s else s
           for s in schema_statements(MYSQL_SCHEMA)]
    assert any("UNIQUE KEY uid (uid)" in s for s in old)
    create_with_mode_off(w, "tpops_galera_old", old + [
        "INSERT INTO `user` (login, passwd, mail) VALUES ('olduser', 'pw', 'old@example.com')",
        # the uid as the node gave it: Galera's auto-increment offset is
        # the node's place in the cluster (wsrep_auto_increment_control)
        "INSERT INTO locks (uid, owner, expires) "
        "SELECT uid, 'gone:1', 0 FROM `user` WHERE login = 'olduser'"])
    assert primary_key(w, "tpops_galera_old") is None
    t = w.install("dbinit-old", [2, 0, 1], db="tpops_galera_old")
    assert primary_key(w, "tpops_galera_old") == "uid"
    # and it serves: the stale lock is free
    t.start()
    reply, quit_reply, _ = session(t.port, "olduser", "pw", lambda tok: False)
    assert reply.startswith(b"+OK") and quit_reply.startswith(b"+OK"), (reply, t.read_log())
    t.stop()


def test_dbinit_upgrades_original_tpops_database(world):
    w = world
    create_with_mode_off(w, "tpops_galera_seed", schema_statements(SEED_SCHEMA) + [
        "INSERT INTO user (login, passwd, mail, maildir, quota) "
        "VALUES ('tommy', 'tommypw', 'tommy@example.com', '', 0)",
        # the uid as the node gave it (see above)
        "INSERT INTO locks (uid, timestamp) "
        "SELECT uid, '2001-07-11 00:00:00' FROM user WHERE login = 'tommy'",
        "INSERT INTO msg (uid, header, body, size, timestamp) "
        "SELECT uid, 'Subject: seed', 'hello\\n', 21, '2001-07-11 07:53:59' "
        "FROM user WHERE login = 'tommy'"], charset="latin1")
    t = w.install("dbinit-seed", [0, 1, 2], db="tpops_galera_seed")
    assert primary_key(w, "tpops_galera_seed") == "uid"
    t.start()
    c = Client(t.port)
    c.login("tommy", "tommypw")
    assert c.cmd("STAT").startswith(b"+OK 1 ")
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    t.stop()


# ---- two daemons, one user ----

def with_metrics(t):
    t.metrics_port = free_port()
    t.write_config(MetricsListen=f"127.0.0.1:{t.metrics_port}")
    return t


def db_counters(t):
    """The daemon's database counters, summed over the servers (its
    metrics): reconnects (a worker opened a connection to replace one it
    had: a failover, a move back) and failed statements (conflicts among
    them, run again)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{t.metrics_port}/metrics",
                                timeout=10) as r:
        text = r.read().decode()
    counts = {"tpops_db_reconnects": 0, "tpops_db_errors": 0}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        for family in counts:
            if name in (family, family + "_total"):
                counts[family] += int(float(line.rsplit(" ", 1)[1]))
    return counts["tpops_db_reconnects"], counts["tpops_db_errors"]


def db_counters_since(daemons, before):
    """(reconnects, failed statements) of each daemon since before."""
    return [tuple(n - m for n, m in zip(db_counters(t), b)) for t, b in zip(daemons, before)]


@pytest.fixture(scope="module")
def daemons(world):
    w = world
    a = with_metrics(w.install("a", [0, 1, 2])).start()
    b = with_metrics(w.install("b", [1, 2, 0])).start()
    store = w.install("store", [2, 0, 1])
    for login in ("alice", "bob", "carol", "dave", "erin"):
        a.add_user(login, "secret")
    return a, b, store


def test_simultaneous_logins_one_ok_one_in_use(world, daemons):
    """Both daemons take the lease through two nodes at once: Galera lets
    one commit and answers the other 1213, which runs again on the same
    connection (no reconnect counted) and finds the lease taken."""
    a, b, _ = daemons
    before = [db_counters(a), db_counters(b)]
    started = time.time()
    for rnd in range(30):
        barrier = threading.Barrier(2)
        replies = {}
        clients = {}

        def login(name, port):
            c = Client(port, timeout=30)
            clients[name] = c
            assert c.cmd("USER alice").startswith(b"+OK")
            barrier.wait(timeout=30)
            replies[name] = c.cmd("PASS secret")

        threads = [threading.Thread(target=login, args=(n, t.port)) for n, t in
                   (("a", a), ("b", b))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        ok = [n for n, r in replies.items() if r.startswith(b"+OK")]
        in_use = [n for n, r in replies.items() if r.startswith(b"-ERR [IN-USE]")]
        assert len(ok) == 1 and len(in_use) == 1, (rnd, replies, a.read_log()[-3000:],
                                                   b.read_log()[-3000:])
        assert clients[ok[0]].cmd("QUIT").startswith(b"+OK")
        for c in clients.values():
            c.close()
    since = db_counters_since((a, b), before)
    assert all(reconnects == 0 for reconnects, _ in since), since
    print(f"30 rounds in {time.time() - started:.1f} s; failed statements run again "
          f"(conflicts): A {since[0][1]}, B {since[1][1]}; reconnects: none")


# ---- concurrent sessions, DELE + QUIT, deliveries ----

def test_concurrent_quit_and_deliveries(world, daemons):
    w = world
    a, b, store = daemons
    users = ["bob", "carol", "dave"]
    stop = threading.Event()
    problems = []
    quits = []

    def deliveries(k):
        for i in range(12):
            user = users[(i + k) % len(users)]
            rc = w.deliver(store, f"{user}@example.com")
            if rc != 0:
                problems.append(f"tpops-store exited {rc}")

    def sessions(t, k):
        n = 0
        while not stop.is_set():
            user = users[(n + k) % len(users)]
            n += 1
            reply, quit_reply, marked = session(t.port, user, "secret",
                                                lambda tok: int(tok[3:]) % 2 == 0)
            if b"[SYS/TEMP]" in reply:
                problems.append(f"login {user}: {reply!r}")
            if quit_reply is None:
                continue
            quits.append(quit_reply)
            if quit_reply.startswith(b"+OK"):
                with w.lock:
                    w.deleted.update(marked)
            else:
                problems.append(f"QUIT {user}: {quit_reply!r}")

    before = [db_counters(a), db_counters(b)]
    started = time.time()
    workers = [threading.Thread(target=deliveries, args=(k,)) for k in range(3)]
    readers = [threading.Thread(target=sessions, args=(t, k)) for k, t in
               ((0, a), (1, b), (2, a), (0, b))]
    for th in workers + readers:
        th.start()
    for th in workers:
        th.join(300)
    time.sleep(1)
    stop.set()
    for th in readers:
        th.join(120)
    assert not problems, (problems, w.store_failures, a.read_log()[-4000:], b.read_log()[-4000:])
    assert len(quits) >= 8, quits  # the sessions did run
    assert len(w.delivered) == 36
    since = db_counters_since((a, b), before)
    assert all(reconnects == 0 for reconnects, _ in since), since
    print(f"36 deliveries and {len(quits)} sessions in {time.time() - started:.1f} s; "
          f"failed statements run again (conflicts): A {since[0][1]}, B {since[1][1]}")


QUOTA_ROUNDS = 150


def test_quota_under_deliveries_through_two_nodes(world, daemons):
    """Two deliveries through two nodes cannot both fit under the quota:
    each writes the user's row, and Galera lets only one commit. Many
    rounds, each with a user of its own: the server sometimes aborts a
    transaction without reporting it (docs/mysql.md), and no round may
    then store past the quota, leave the quota changed, or exit 0 for a
    message it did not store (or not 0 for one it did)."""
    w = world
    a, _, _ = daemons
    via = [w.install("store-n1", [0]), w.install("store-n2", [1])]
    message = b"Subject: q\n\n" + b"x" * 60 + b"\n"  # 76 octets on the wire
    for k in range(QUOTA_ROUNDS):
        login = f"quota{k}"
        a.tool("tpops-useradd", "--quota", "200", login, "secret", f"{login}@example.com")
        results = []

        def deliver(t):
            for _ in range(4):
                r = t.tool("tpops-store", f"{login}@example.com", input=message, check=False)
                results.append((r.returncode, r.stderr.decode(errors="replace").strip()))

        threads = [threading.Thread(target=deliver, args=(t,)) for t in via]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        used = w.sql("SELECT COALESCE(SUM(m.size), 0), COUNT(*) FROM msg m JOIN `user` u "
                     "ON u.uid = m.uid WHERE u.login = %s", (login,))[0]
        quota = w.sql("SELECT quota FROM `user` WHERE login = %s", (login,))[0][0]
        codes = [code for code, _ in results]
        where = (k, used, quota, results)
        assert used[0] <= 200, where
        assert quota == 200, where
        assert codes.count(0) == used[1] == 2, where
        assert 75 not in codes, where  # refused for the quota, never a temporary failure


# ---- failover ----

def test_node_kill_under_load_fails_over(world, daemons):
    w = world
    a, b, store = daemons
    node = w.node(0)  # the one daemon A prefers
    logins = []  # (started, finished, reply)
    stop = threading.Event()

    def load(user):
        while not stop.is_set():
            started = time.time()
            try:
                reply, quit_reply, marked = session(a.port, user, "secret",
                                                    lambda tok: True, timeout=30)
                if quit_reply is not None and quit_reply.startswith(b"+OK"):
                    with w.lock:
                        w.deleted.update(marked)
            except (OSError, EOFError, AssertionError) as e:
                reply = repr(e).encode()
            logins.append((started, time.time(), reply))
            time.sleep(0.1)

    def deliveries():
        while not stop.is_set():
            for user in ("erin", "bob"):
                w.deliver(store, f"{user}@example.com")

    # a bounded load on daemon A: three users' sessions in a loop, and
    # deliveries through node 3
    threads = [threading.Thread(target=load, args=(u,)) for u in ("erin", "alice", "bob")]
    threads.append(threading.Thread(target=deliveries))
    for th in threads:
        th.start()
    time.sleep(3)
    killed = time.time()
    node.kill9()
    time.sleep(15)
    stop.set()
    for th in threads:
        th.join(120)
    before = [r for s, f, r in logins if f < killed]
    after = [(s - killed, f - killed, r) for s, f, r in logins if s >= killed]
    assert before and all(r.startswith(b"+OK") for r in before), before
    ok_after = [f for s, f, r in after if r.startswith(b"+OK")]
    assert ok_after and ok_after[0] <= 10, (after, a.read_log()[-4000:])
    # once through, it stays through
    assert all(r.startswith(b"+OK") for s, f, r in after if s > ok_after[0] + 1), after
    print(f"first login through another node {ok_after[0]:.1f} s after the kill; "
          f"{len(after)} logins after it, {len(ok_after)} +OK")
    # the node restarts and rejoins (a full state transfer: mariabackup)
    restarted = time.time()
    node.start()
    assert w.cluster.size(node) == 3
    print(f"node 1 restarted and Synced in the cluster of 3 after {time.time() - restarted:.1f} s")
    # SIGHUP moves daemon A's connections back to node 1
    a.proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    for _ in range(8):
        reply, _, _ = session(a.port, "erin", "secret", lambda tok: False)
        assert reply.startswith(b"+OK"), reply
    with node.connect() as c, c.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                    "WHERE USER = %s AND DB = %s", (DB_USER, w.db))
        assert cur.fetchone()[0] >= 1, a.read_log()[-3000:]


def test_node_outside_primary_component_is_skipped(world, daemons):
    """A node cut off from the others (gmcast.isolate) leaves the primary
    component and answers 1047; daemon A, whose connections are on it
    (the SIGHUP above moved them back), goes on through another node."""
    w = world
    a, _, _ = daemons
    node = w.node(0)
    with node.connect() as c, c.cursor() as cur:
        cur.execute("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'")
    isolated = time.time()
    try:
        deadline = isolated + 30
        while node.status("wsrep_ready") == "ON" and time.time() < deadline:
            time.sleep(0.2)
        assert node.status("wsrep_ready") == "OFF"
        replies = []
        for _ in range(10):
            reply, quit_reply, _ = session(a.port, "erin", "secret", lambda tok: False)
            replies.append((round(time.time() - isolated, 1), reply, quit_reply))
        assert all(r.startswith(b"+OK") and q.startswith(b"+OK") for _, r, q in replies), (
            replies, a.read_log()[-3000:])
        assert "Galera node is not ready" in a.read_log() or "WSREP" in a.read_log(), \
            a.read_log()[-3000:]
    finally:
        with node.connect() as c, c.cursor() as cur:
            cur.execute("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'")
    node.wait_synced()
    assert w.cluster.size(node) == 3


def test_daemon_kill_passes_the_lock_after_lease(world, daemons):
    a, b, _ = daemons
    c = Client(a.port, timeout=30)
    c.login("dave", "secret")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    killed = time.time()
    c.close()
    reply, quit_reply, _ = session(b.port, "dave", "secret", lambda tok: False)
    assert reply.startswith(b"-ERR [IN-USE]"), reply
    served = None
    while time.time() - killed < LEASE + 15:
        reply, quit_reply, _ = session(b.port, "dave", "secret", lambda tok: False)
        if reply.startswith(b"+OK"):
            served = time.time() - killed
            assert quit_reply.startswith(b"+OK")
            break
        assert reply.startswith(b"-ERR [IN-USE]"), reply
        time.sleep(0.5)
    assert served is not None, b.read_log()[-3000:]
    assert served <= LEASE + 5, served
    print(f"served by the other daemon {served:.1f} s after the kill (LockLease {LEASE})")
    a.stop()
    a.start()


# ---- the ledger ----

def test_ledger(world, daemons):
    w = world
    rows = w.sql("SELECT m.header FROM msg m JOIN `user` u ON u.uid = m.uid "
                 "WHERE u.login IN ('alice', 'bob', 'carol', 'dave', 'erin')")
    present = [re.search(rb"Subject: (tok\d+)", bytes(r[0])).group(1).decode() for r in rows]
    duplicates = {t for t in present if present.count(t) > 1}
    assert not duplicates, duplicates
    assert w.deleted <= w.delivered, w.deleted - w.delivered
    # a delivery that did not exit 0 left nothing behind
    assert set(present) == w.delivered - w.deleted, (
        set(present) ^ (w.delivered - w.deleted), w.store_failures)
    print(f"ledger: {len(w.delivered)} deliveries exited 0, {len(w.deleted)} deleted by "
          f"+OK QUITs, {len(present)} present, {len(w.store_failures)} deliveries failed")
