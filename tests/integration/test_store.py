"""tpops-store, the delivery agent (SPEC section 4): what it stores, and its
exit status in every case Postfix acts on. A failed delivery leaves the
`msg` table exactly as it was."""
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import TOOL_ASAN, program

EX_OK, EX_USAGE, EX_NOUSER, EX_CANTCREAT, EX_TEMPFAIL, EX_CONFIG = 0, 64, 67, 73, 75, 78

MSG = b"From: a@example.org\nSubject: one\n\nline 1\nline 2\n"


def wire(msg):
    """The CRLF form POP3 sends (and `size` counts), before dot-stuffing."""
    out = msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def rows(t):
    return t.sql("SELECT id, uid, header, body, size FROM msg ORDER BY id")


def parts(t, msg_id):
    """The body parts of a large message (bodies over 1 MiB are stored in
    msg_part rows of 256 KiB)."""
    return b"".join(bytes(d) for (d,) in t.sql(
        "SELECT data FROM msg_part WHERE id = ? ORDER BY pos", (msg_id,)))


def stored(t, uid):
    """The messages of uid as stored: header || body || parts, and size."""
    return [(bytes(h) + bytes(b) + parts(t, i), size)
            for i, u, h, b, size in rows(t) if u == uid]


def uid_of(t, login):
    return t.sql('SELECT uid FROM "user" WHERE login = ?', (login,))[0][0]


@pytest.fixture
def inst(make_tpops):
    t = make_tpops()
    t.add_user("alice", "secret")
    t.add_user("bob", "pw")
    return t


def test_store_stdin(inst):
    r = inst.tool("tpops-store", "alice@example.com", input=MSG)
    assert r.returncode == EX_OK, r
    assert stored(inst, uid_of(inst, "alice")) == [(MSG, len(wire(MSG)))]
    assert stored(inst, uid_of(inst, "bob")) == []
    # header and body are split at the empty line
    (_, _, header, body, _), = rows(inst)
    assert bytes(header) == b"From: a@example.org\nSubject: one\n\n"
    assert bytes(body) == b"line 1\nline 2\n"
    ts, = inst.sql("SELECT timestamp FROM msg")[0]
    assert len(ts) == 19 and ts[4] == "-" and ts[10] == " ", ts


def write_files(t, msgs):
    """Message files the tool can read after it drops to the run user."""
    paths = []
    for i, m in enumerate(msgs):
        p = os.path.join(t.dir, f"message-{i}")
        with open(p, "wb") as f:
            f.write(m)
        os.chmod(p, 0o644)
        paths.append(p)
    return paths


def test_store_files(inst):
    msgs = [b"Subject: first\n\n1\n", b"Subject: second\r\n\r\n2\r\n",
            b"Subject: third\n\n" + bytes(range(256)) + b"\n"]
    files = write_files(inst, msgs)
    r = inst.tool("tpops-store", "bob@example.com", *files)
    assert r.returncode == EX_OK, r
    assert stored(inst, uid_of(inst, "bob")) == [(m, len(wire(m))) for m in msgs]
    assert stored(inst, uid_of(inst, "alice")) == []
    # stdin is not read when files are given
    r = inst.tool("tpops-store", "alice@example.com", files[0], input=b"Subject: stdin\n\nx\n")
    assert r.returncode == EX_OK
    assert stored(inst, uid_of(inst, "alice")) == [(msgs[0], len(wire(msgs[0])))]


def test_store_missing_file(inst):
    p, = write_files(inst, [MSG])
    r = inst.tool("tpops-store", "alice@example.com", os.path.join(inst.dir, "nonexistent"), p,
                  check=False)
    assert r.returncode not in (EX_OK, EX_TEMPFAIL), r
    assert b"nonexistent" in r.stderr
    # the readable file is stored once, whole
    assert stored(inst, uid_of(inst, "alice")) == [(MSG, len(wire(MSG)))]


@pytest.mark.parametrize("args", [(), ("--bogus", "alice@example.com")])
def test_store_usage(inst, args):
    r = inst.tool("tpops-store", *args, input=MSG, check=False)
    assert r.returncode == EX_USAGE, r
    assert b"usage" in r.stderr.lower()
    assert rows(inst) == []


# ASCII case does not matter (test_auth.py), anything else does
@pytest.mark.parametrize("mail", ["nobody@example.com", "\u00c4lice@example.com", "alice",
                                  "alice@example.com "])
def test_store_unknown_address(inst, mail):
    r = inst.tool("tpops-store", mail, input=MSG, check=False)
    assert r.returncode == EX_NOUSER, r
    assert b"unknown" in r.stderr
    assert rows(inst) == []


def test_store_bad_config(inst):
    with open(inst.conf, "a") as f:
        f.write("SQLite_Path:\n")
    r = inst.tool("tpops-store", "alice@example.com", input=MSG, check=False)
    assert r.returncode == EX_CONFIG, r
    n = len(open(inst.conf).read().splitlines())
    assert f"{inst.conf}:{n}:".encode() in r.stderr
    inst.write_config()   # rewrites it without the bad line
    assert rows(inst) == []


def test_store_quota(make_tpops):
    t = make_tpops()
    # LF on disk, CRLF in `size`: the quota counts what POP3 sends
    m = b"Subject: q\n\n" + b"x" * 80 + b"\n"   # 93 octets, 96 with CRLF
    assert len(m) == 93 and len(wire(m)) == 96
    t.tool("tpops-useradd", "--quota", str(2 * 96), "carol", "pw", "carol@example.com")
    t.add_user("dave", "pw")
    uid = uid_of(t, "carol")
    assert t.store("carol@example.com", m, check=False) == EX_OK
    assert t.store("carol@example.com", m, check=False) == EX_OK   # exactly full
    before = rows(t)
    r = t.tool("tpops-store", "carol@example.com", input=b"\n", check=False)
    assert r.returncode == EX_CANTCREAT, r
    assert b"quota" in r.stderr.lower()
    assert rows(t) == before
    # others are not limited by carol's quota
    assert t.store("dave@example.com", m * 10, check=False) == EX_OK
    assert [s for _, s in stored(t, uid)] == [96, 96]


def test_store_quota_counts_crlf(make_tpops):
    t = make_tpops()
    m = b"Subject: q\n\n" + b"y\n" * 40   # 92 octets with LF, 134 with CRLF
    t.tool("tpops-useradd", "--quota", "100", "erin", "pw", "erin@example.com")
    r = t.tool("tpops-store", "erin@example.com", input=m, check=False)
    assert r.returncode == EX_CANTCREAT, r
    assert rows(t) == []
    crlf = wire(m)[:14 + 3 * 28]   # 98 octets, CRLF already: fits
    assert t.store("erin@example.com", crlf, check=False) == EX_OK
    assert stored(t, uid_of(t, "erin")) == [(crlf, len(wire(crlf)))]


def test_store_quota_several_files(make_tpops):
    t = make_tpops()
    small = b"Subject: s\n\nsmall\n"
    big = b"Subject: b\n\n" + b"z" * 500 + b"\n"
    t.tool("tpops-useradd", "--quota", "200", "fay", "pw", "fay@example.com")
    paths = write_files(t, [small, big, small])
    r = t.tool("tpops-store", "fay@example.com", *paths, check=False)
    assert r.returncode == EX_CANTCREAT, r
    # the big one is not there, not even in part; the small ones are whole
    got = stored(t, uid_of(t, "fay"))
    assert big not in [m for m, _ in got]
    assert all(m == small for m, _ in got) and len(got) in (1, 2), got


def test_store_database_locked(inst):
    """Another process holds the write lock past the busy timeout (5 s):
    a temporary failure, Postfix will retry; nothing is stored."""
    before = rows(inst)
    con = sqlite3.connect(inst.settings["SQLite_Path"], isolation_level=None, timeout=1)
    try:
        con.execute("BEGIN EXCLUSIVE")
        start = time.monotonic()
        r = inst.tool("tpops-store", "alice@example.com", input=MSG, check=False)
        elapsed = time.monotonic() - start
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert r.returncode == EX_TEMPFAIL, r
    assert elapsed >= 4.5, elapsed
    assert r.stderr != b""
    assert rows(inst) == before
    # once the lock is gone, the retry succeeds, once
    assert inst.store("alice@example.com", MSG) == EX_OK
    assert stored(inst, uid_of(inst, "alice")) == [(MSG, len(wire(MSG)))]


def test_store_waits_for_a_short_lock(inst):
    """A lock held for less than the busy timeout only delays delivery."""
    con = sqlite3.connect(inst.settings["SQLite_Path"], isolation_level=None,
                          check_same_thread=False, timeout=1)
    con.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(1.0, lambda: (con.execute("ROLLBACK"), con.close()))
    release.start()
    try:
        r = inst.tool("tpops-store", "alice@example.com", input=MSG, check=False)
    finally:
        release.join()
    assert r.returncode == EX_OK, r
    assert stored(inst, uid_of(inst, "alice")) == [(MSG, len(wire(MSG)))]


def test_store_directory_unwritable(inst):
    """The database cannot be written (here: its directory is read-only, so
    SQLite cannot create its WAL files): 75, not a bounce."""
    before = rows(inst)
    os.chmod(inst.dir, 0o555)
    try:
        r = inst.tool("tpops-store", "alice@example.com", input=MSG, check=False)
    finally:
        os.chmod(inst.dir, 0o755)
    assert r.returncode == EX_TEMPFAIL, r
    assert rows(inst) == before
    assert inst.store("alice@example.com", MSG) == EX_OK


def test_store_database_missing(inst):
    """No database file where the configuration says: not a bounce either
    (a mount that is not there yet, a restore in progress)."""
    inst.write_config(SQLite_Path=os.path.join(inst.dir, "nodir", "tpops.db"))
    r = inst.tool("tpops-store", "alice@example.com", input=MSG, check=False)
    assert r.returncode == EX_TEMPFAIL, r


def test_store_killed_while_reading(inst):
    """The MTA gives up half-way through the message and kills the
    delivery: no part of the message is stored."""
    env = dict(os.environ, ASAN_OPTIONS=TOOL_ASAN)
    p = subprocess.Popen([program("tpops-store"), "-c", inst.conf, "alice@example.com"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    p.stdin.write(b"Subject: half\n\n" + b"x" * 100 + b"\n" * 1000)
    p.stdin.flush()
    time.sleep(0.5)
    p.kill()
    assert p.wait() == -9
    p.stdin.close()
    assert rows(inst) == []
    assert inst.store("alice@example.com", MSG) == EX_OK
    assert len(rows(inst)) == 1


def test_store_while_daemon_serves(inst, client_for):
    """Delivery while a session holds the maildrop: the message is stored,
    and the session's view (fixed at login) does not change under it."""
    inst.store("alice@example.com", MSG)
    inst.start()
    c = client_for(inst)
    c.login()
    stat = c.cmd("STAT")
    assert inst.store("alice@example.com", b"Subject: two\n\n2\n") == EX_OK
    assert c.cmd("STAT") == stat
    assert c.cmd("QUIT").startswith(b"+OK")
    c2 = client_for(inst)
    c2.login()
    assert c2.cmd("STAT").startswith(b"+OK 2 ")


def test_store_large_message_whole(inst):
    """A message far bigger than any read buffer is stored whole: one msg
    row, its body in msg_part rows of 256 KiB."""
    big = b"Subject: big\n\n" + b"".join(b"%08d %s\n" % (i, b"q" * 60) for i in range(60000))
    assert inst.store("alice@example.com", big) == EX_OK
    got = stored(inst, uid_of(inst, "alice"))
    assert len(got) == 1
    assert got[0][0] == big
    assert got[0][1] == len(wire(big))
    npart = inst.sql("SELECT COUNT(*) FROM msg_part")[0][0]
    assert npart == -(-(len(big) - len(b"Subject: big\n\n")) // (256 * 1024))


def sqlite_files(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith("absent.db"))


def test_store_never_creates_the_database(inst):
    """The SQLite file is missing (a volume not mounted yet): tpops-store
    defers (75) and leaves no empty tpops.db, -wal or -shm behind; nor does
    the daemon, at start-up or at a login. Only tpops-dbinit creates a
    database."""
    inst.write_config(SQLite_Path=os.path.join(inst.dir, "absent.db"))
    r = inst.tool("tpops-store", "alice@example.com", input=MSG, check=False)
    assert r.returncode == EX_TEMPFAIL, r
    assert b"absent.db" in r.stderr, r.stderr
    assert sqlite_files(inst.dir) == []
    inst.start()
    import poplib
    c = poplib.POP3("127.0.0.1", inst.port, timeout=30)
    c.user("alice")
    with pytest.raises(poplib.error_proto) as e:
        c.pass_("secret")
    assert b"SYS/TEMP" in e.value.args[0], e.value
    c.quit()
    inst.stop()
    assert sqlite_files(inst.dir) == []
    # tpops-dbinit is the one that makes it
    inst.tool("tpops-dbinit")
    assert "absent.db" in sqlite_files(inst.dir)


def test_store_file_size_limit(inst):
    """Under a file size limit (RLIMIT_FSIZE) smaller than the message, the
    write fails with EFBIG: a temporary failure (75) that Postfix retries,
    not death by SIGXFSZ (exit 153, a bounce); nothing is stored."""
    import resource
    big = b"Subject: big\n\n" + b"y" * 2_000_000 + b"\n"
    limit = 1 << 20

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, ASAN_OPTIONS=TOOL_ASAN)
    r = subprocess.run([program("tpops-store"), "-c", inst.conf, "alice@example.com"],
                       input=big, capture_output=True, env=env, timeout=120,
                       preexec_fn=limited)
    assert r.returncode == EX_TEMPFAIL, r
    assert rows(inst) == []
    assert inst.store("alice@example.com", big) == EX_OK
    assert stored(inst, uid_of(inst, "alice")) == [(big, len(wire(big)))]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tpops-store drops to User)")
def test_store_root_only_file(inst):
    """Run as root with a FILE only root can read: the file is opened
    before tpops-store switches to User, so it is stored."""
    d = tempfile.mkdtemp(prefix="tpops-rootonly-")
    try:
        os.chmod(d, 0o700)
        path = os.path.join(d, "msg")
        with open(path, "wb") as f:
            f.write(MSG)
        os.chmod(path, 0o600)
        r = inst.tool("tpops-store", "alice@example.com", path, check=False)
        assert r.returncode == EX_OK, r
        assert stored(inst, uid_of(inst, "alice")) == [(MSG, len(wire(MSG)))]
    finally:
        shutil.rmtree(d)
