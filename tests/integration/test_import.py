"""tpops-import against a real Dovecot (Debian's dovecot-pop3d, a private
instance): users whose Maildirs Dovecot has indexed (a POP3 session each,
so dovecot-uidlist exists, some with a non-default pop3_uidl_format) move
to tpops with the same UIDL lists, sizes and bytes, and fetchmail and mpop,
which fetched everything from Dovecot first, fetch nothing from tpops after
the switch, then exactly the new mail. The same through the network
(tpops-import pop3). And a Courier Maildir, whose courierpop3dsizelist is
written here by the rules of Courier's pop3d (Courier itself is not
installed)."""
import os
import poplib
import shutil
import subprocess

import pytest

import dovecot
from conftest import IS_ROOT, RUN_USER, RUN_GROUP, free_port, make_dir
from pop3tls import cert  # noqa: F401 (fixture)

# message four has a 20,000-octet line
poplib._MAXLINE = 1 << 20

pytestmark = pytest.mark.skipif(not dovecot.available(),
                                reason="needs root and dovecot-pop3d")

# Messages as Postfix/procmail leave them (LF) or with CRLF; a dot line,
# 8-bit octets, no final newline, an empty body.
MESSAGES = [
    b"From: a@example.com\nSubject: one\n\nHello\n.hidden dot\n..two\n.\n8-bit: \xe4\xf6\xfc\n",
    b"From: b@example.com\r\nSubject: two\r\n\r\ncrlf body\r\n.\r\n\r\n",
    b"Subject: three, empty body\n\n",
    b"Subject: four\n\n" + b"long line " * 2000 + b"\nno newline at the end",
    b"Subject: five\n\nlast\n",
]


def put_maildir(home, messages, start=1764158400):
    """A Maildir below home with the messages in new/ under names as
    Postfix's local(8) writes them (some with Dovecot's S= size)."""
    md = os.path.join(home, "Maildir")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    for i, m in enumerate(messages):
        name = f"{start + i}.V801I{1000 + i}M{i * 7}.mail.example.com"
        if i % 2:
            name += f",S={len(m)}"
        with open(os.path.join(md, "new", name), "wb") as f:
            f.write(m)
    return md


def chown_tree(path):
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            shutil.chown(os.path.join(root, n), RUN_USER, RUN_GROUP)
    shutil.chown(path, RUN_USER, RUN_GROUP)


def pop3_view(port, user, password):
    """(UIDL list, LIST sizes, every message as RETR sent it)."""
    p = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        p.user(user)
        p.pass_(password)
        uidls = [line.split(b" ", 1)[1] for line in p.uidl()[1]]
        sizes = [int(line.split(b" ", 1)[1]) for line in p.list()[1]]
        bodies = []
        for i in range(1, len(uidls) + 1):
            _, lines, octets = p.retr(i)
            bodies.append((b"\r\n".join(lines) + b"\r\n", octets))
        return uidls, sizes, bodies
    finally:
        p.quit()


# -- real clients that leave mail on the server --

def fetchmail(home, port, user, password):
    """Runs fetchmail (keep, uidl); returns how many messages it delivered.
    The poll name stays the same when the server behind it changes, as it
    does for a user whose provider switched servers."""
    out = os.path.join(home, "fetched")
    os.makedirs(out, exist_ok=True)
    before = len(os.listdir(out))
    rc = os.path.join(home, "fetchmailrc")
    mda = f"/bin/sh -c 'cat > \"$(mktemp {out}/msg.XXXXXX)\"'"
    with open(rc, "w") as f:
        f.write(f'poll mail.example.com via 127.0.0.1 protocol POP3 port {port} uidl\n'
                f'  user "{user}" there with password "{password}" is "root" here\n'
                f'  sslproto ""\n')
    os.chmod(rc, 0o600)
    r = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--nosyslog", "--keep",
                        "--mda", mda, "--idfile", os.path.join(home, "fetchids")],
                       capture_output=True, timeout=120,
                       env=dict(os.environ, HOME=home, FETCHMAILHOME=home))
    assert r.returncode in (0, 1), r.stdout + r.stderr  # 1: no mail
    return len(os.listdir(out)) - before


def mpop(home, port, user, password):
    """Runs mpop (keep, only_new): returns how many messages it delivered."""
    out = os.path.join(home, "mpop-fetched")
    os.makedirs(out, exist_ok=True)
    before = len(os.listdir(out))
    conf = os.path.join(home, "mpoprc")
    with open(conf, "w") as f:
        f.write(f"""account default
host 127.0.0.1
port {port}
tls off
auth user
user {user}
password {password}
keep on
only_new on
uidls_file {home}/mpop-uidls
delivery mda "/bin/sh -c 'cat > $(mktemp {out}/msg.XXXXXX)'"
""")
    os.chmod(conf, 0o600)
    r = subprocess.run(["mpop", "-C", conf, "-q"], capture_output=True, timeout=120,
                       env=dict(os.environ, HOME=home))
    assert r.returncode == 0, r.stdout + r.stderr
    return len(os.listdir(out)) - before


def doveadm_pw(scheme, password):
    return subprocess.run(["doveadm", "pw", "-s", scheme, "-p", password], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def dovecot_users(tmpdir_shared):
    """A Dovecot with four users and their Maildirs, indexed by one POP3
    session each; yields (Dovecot, {login: (password, view)})."""
    base = make_dir(os.path.join(tmpdir_shared, "dovecot"))
    uid, gid = dovecot.run_user_ids()
    users = {
        # login: (password, stored form, extra fields, messages)
        "alice@example.com": ("secret", "{PLAIN}secret", "", MESSAGES),
        "bob": ("pw-bob", doveadm_pw("SHA512-CRYPT", "pw-bob"),
                "userdb_pop3_uidl_format=%%f", MESSAGES[:3]),
        "carol": ("pw-carol", "{CLEARTEXT}pw-carol", "userdb_pop3_uidl_format=%%v-%%u",
                  MESSAGES[1:]),
        "erin": ("pw-erin", doveadm_pw("SHA512-CRYPT", "pw-erin"),
                 "userdb_pop3_uidl_format=%%Lg.%%u", MESSAGES[2:]),
    }
    lines = []
    for n, (login, (_, stored, extra, msgs)) in enumerate(users.items()):
        home = os.path.join(base, "home", login)
        put_maildir(home, msgs, start=1764158400 + 100 * n)
        lines.append(f"{login}:{stored}:{uid}:{gid}::{home}::{extra}")
    # a scheme tpops does not verify: reported, not imported
    lines.append(f"dave:{doveadm_pw('SSHA', 'pw-dave')}:{uid}:{gid}::{base}/home/dave::")
    put_maildir(os.path.join(base, "home", "dave"), MESSAGES[:1])
    chown_tree(base)
    d = dovecot.Dovecot(os.path.join(base, "server"), lines).start()
    try:
        views = {}
        for login, (password, _, _, msgs) in users.items():
            try:
                views[login] = pop3_view(d.port, login, password)
            except poplib.error_proto as e:
                raise AssertionError(f"{login}: {e}\n{d.read_log()}")
            assert len(views[login][0]) == len(msgs)
        yield d, base, {login: (v[0], views[login]) for login, v in users.items()}
    finally:
        d.stop()


def assert_same_view(got, want, login):
    """The same UIDLs in the same order, the same octets from RETR, the
    same LIST sizes; except that tpops counts the CRLF it adds after a
    message without a final newline (Dovecot sends it too, but leaves it out
    of the size)."""
    assert got[0] == want[0], login
    assert [b for b, _ in got[2]] == [b for b, _ in want[2]], login
    for size, dsize, (body, _) in zip(got[1], want[1], want[2]):
        ends_bare = b"no newline at the end" in body  # MESSAGES[3]
        assert size == dsize or (ends_bare and size == dsize + 2), (login, size, dsize)


def maildir_tpops(make_tpops, base):
    t = make_tpops(Mailbox="Maildir", MaildirRoot=os.path.join(base, "home"))
    return t


def test_dovecot_import_keeps_uidls_sizes_and_bytes(make_tpops, dovecot_users):
    d, base, users = dovecot_users
    # the default format, a %f and a %v-%u user, and one with %Lg.%u
    alice_uidls = users["alice@example.com"][1][0]
    assert all(len(u) == 16 for u in alice_uidls), alice_uidls
    assert users["carol"][1][0][0].decode().endswith("-1")

    # mail programs that keep mail on the server fetch everything once
    clients = os.path.join(base, "clients")
    os.makedirs(clients)
    pw = users["alice@example.com"][0]
    assert fetchmail(clients, d.port, "alice@example.com", pw) == len(MESSAGES)
    assert mpop(clients, d.port, "alice@example.com", pw) == len(MESSAGES)
    assert fetchmail(clients, d.port, "alice@example.com", pw) == 0

    t = maildir_tpops(make_tpops, base)
    # erin's format is given on the command line instead of in the file
    passwd, passwd_erin = (os.path.join(base, n) for n in ("import.passwd", "erin.passwd"))
    with open(d.passwd) as src, open(passwd, "w") as main, open(passwd_erin, "w") as erin:
        for line in src:
            if line.startswith("erin:"):
                erin.write(line.replace("userdb_pop3_uidl_format=%%Lg.%%u", ""))
            else:
                main.write(line)
    dry = t.tool("tpops-import", "dovecot", "--dry-run", passwd, check=False)
    assert dry.returncode == 65, dry.stderr  # dave
    assert b"dry run: alice@example.com (a new user): 5 messages" in dry.stdout, dry.stdout
    assert t.tool("tpops-users").stdout.strip() == b""  # the dry run wrote nothing

    r = t.tool("tpops-import", "dovecot", "--quiet", passwd, check=False)
    err = r.stderr.decode()
    assert r.returncode == 65, err
    assert "dave: password scheme {SSHA} is not one tpops verifies" in err, err
    assert b"3 users" in r.stdout, r.stdout
    t.tool("tpops-import", "dovecot", "--quiet", "--uidl-format", "%Lg.%u", passwd_erin)
    t.start()
    for login, (password, view) in users.items():
        assert_same_view(pop3_view(t.port, login, password), view, login)
    # a second run imports nothing more
    r = t.tool("tpops-import", "dovecot", "--quiet", passwd, check=False)
    assert b" 0 messages" in r.stdout, r.stdout

    # the listing cache can go: the UIDLs stay
    alice_md = os.path.join(base, "home", "alice@example.com", "Maildir")
    for cache in ("tpops-index", "tpops-sizes"):
        if os.path.exists(os.path.join(alice_md, cache)):
            os.unlink(os.path.join(alice_md, cache))
    assert_same_view(pop3_view(t.port, "alice@example.com", pw), users["alice@example.com"][1],
                     "alice@example.com")

    # after the switch, the clients fetch nothing again...
    assert fetchmail(clients, t.port, "alice@example.com", pw) == 0
    assert mpop(clients, t.port, "alice@example.com", pw) == 0
    # ...and exactly the new mail after a delivery
    t.store("alice@example.com", b"Subject: six\n\nnew after the switch\n")
    assert fetchmail(clients, t.port, "alice@example.com", pw) == 1
    assert mpop(clients, t.port, "alice@example.com", pw) == 1
    uidls, _, _ = pop3_view(t.port, "alice@example.com", pw)
    assert uidls[:len(alice_uidls)] == alice_uidls
    assert len(set(uidls)) == len(uidls) == len(alice_uidls) + 1

    # --copy: the same, from copies below another MaildirRoot
    c = make_tpops("copy", backend="maildir")
    c.tool("tpops-import", "dovecot", "--quiet", "--copy", passwd, check=False)
    c.tool("tpops-import", "dovecot", "--quiet", "--copy", "--uidl-format", "%Lg.%u",
           passwd_erin)
    assert os.path.isdir(os.path.join(c.dir, "maildirs", "bob", "cur"))
    c.start()
    for login, (password, view) in users.items():
        if login != "alice@example.com":  # she has a sixth message now
            assert_same_view(pop3_view(c.port, login, password), view, login)


def test_pop3_import_from_dovecot_over_the_network(make_tpops, dovecot_users, tmpdir_shared):
    d, base, users = dovecot_users
    pw = users["alice@example.com"][0]
    clients = os.path.join(base, "clients")
    os.makedirs(clients)
    assert fetchmail(clients, d.port, "alice@example.com", pw) == len(MESSAGES)
    assert mpop(clients, d.port, "alice@example.com", pw) == len(MESSAGES)

    # into the SQL store
    t = make_tpops()
    # the same login as at the old server: the clients need not change
    t.add_user("alice@example.com", pw, "alice@example.com")
    r = t.tool("tpops-import", "pop3", "--into-sql", "--quiet", "--host", "127.0.0.1",
               "--port", d.port, "alice@example.com", "-", input=pw.encode())
    assert b"5 messages" in r.stdout, r.stdout
    t.start()
    assert_same_view(pop3_view(t.port, "alice@example.com", pw), users["alice@example.com"][1], "alice")
    # nothing was deleted on the source
    assert pop3_view(d.port, "alice@example.com", pw)[0] == users["alice@example.com"][1][0]
    # the clients, now fetching from tpops, fetch nothing again
    assert fetchmail(clients, t.port, "alice@example.com", pw) == 0
    assert mpop(clients, t.port, "alice@example.com", pw) == 0

    # resumable: a second run imports nothing; after new mail at the old
    # server, exactly that
    r = t.tool("tpops-import", "pop3", "--into-sql", "--quiet", "--host", "127.0.0.1",
               "--port", d.port, "alice@example.com", pw)
    assert b" 0 messages" in r.stdout and b"5 already there" in r.stdout, r.stdout
    new = os.path.join(base, "home", "alice@example.com", "Maildir", "new",
                       "1764199999.V801I9999M1.mail.example.com")
    with open(new, "wb") as f:
        f.write(b"Subject: late\n\narrived at the old server before the switch\n")
    shutil.chown(new, RUN_USER, RUN_GROUP)
    late_uidls = pop3_view(d.port, "alice@example.com", pw)[0]
    r = t.tool("tpops-import", "pop3", "--into-sql", "--quiet", "--host", "127.0.0.1",
               "--port", d.port, "alice@example.com", pw)
    assert b" 1 messages" in r.stdout, r.stdout
    assert pop3_view(t.port, "alice@example.com", pw)[0] == late_uidls
    # the clients fetch exactly that one, then exactly what tpops receives
    assert fetchmail(clients, t.port, "alice@example.com", pw) == 1
    assert mpop(clients, t.port, "alice@example.com", pw) == 1
    t.store("alice@example.com", b"Subject: after\n\nafter the switch\n")
    assert fetchmail(clients, t.port, "alice@example.com", pw) == 1
    assert mpop(clients, t.port, "alice@example.com", pw) == 1
    uidls = pop3_view(t.port, "alice@example.com", pw)[0]
    assert uidls[:-1] == late_uidls and len(set(uidls)) == len(uidls)
    # a message the user deleted here does not come back with the next run
    p = poplib.POP3("127.0.0.1", t.port, timeout=30)
    p.user("alice@example.com")
    p.pass_(pw)
    p.dele(1)
    p.quit()
    r = t.tool("tpops-import", "pop3", "--into-sql", "--quiet", "--host", "127.0.0.1",
               "--port", d.port, "alice@example.com", pw)
    assert b" 0 messages" in r.stdout, r.stdout
    assert pop3_view(t.port, "alice@example.com", pw)[0] == uidls[1:]

    # into a Maildir: files of tpops's own, the UIDLs in tpops-uidls
    m = make_tpops("maildir", backend="maildir")
    m.add_user("bob", "pw-bob", "bob@example.com")
    m.tool("tpops-import", "pop3", "--quiet", "--host", "127.0.0.1", "--port", d.port,
           "bob", "pw-bob")
    m.start()
    assert_same_view(pop3_view(m.port, "bob", "pw-bob"), users["bob"][1], "bob")
    r = m.tool("tpops-import", "pop3", "--quiet", "--host", "127.0.0.1", "--port", d.port,
               "bob", "pw-bob")
    assert b"3 already there" in r.stdout, r.stdout
    # a wrong password is reported and imports nothing
    r = m.tool("tpops-import", "pop3", "--quiet", "--host", "127.0.0.1", "--port", d.port,
               "bob", "wrong", check=False)
    assert r.returncode != 0 and b"PASS: the server said -ERR" in r.stderr, r.stderr


def courier_maildir(root, name, files, sizelist=None, uiddb=None):
    """A Courier Maildir: files {"cur/NAME:2,S": bytes}; the sizelist and
    courierimapuiddb as Courier's pop3d and imapd write them."""
    md = os.path.join(root, name)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    for path, data in files.items():
        with open(os.path.join(md, path), "wb") as f:
            f.write(data)
    for fname, text in (("courierpop3dsizelist", sizelist), ("courierimapuiddb", uiddb)):
        if text is not None:
            with open(os.path.join(md, fname), "w") as f:
                f.write(text)
    return md


def test_courier_maildir_keeps_courier_pop3_uidls(make_tpops, tmpdir_shared):
    """Courier itself is not installed: its files are written here by the
    rules of its pop3d (pop3dserver.c): courierpop3dsizelist lines are
    "NAME SIZE UID:UIDVALIDITY:UTF8", shown as UID<uid>-<uidvalidity>,
    in the order of the names' leading numbers; without the file, the name
    with ' \" + and octets outside 0x21-0x7E as +XX."""
    t = make_tpops(backend="maildir")
    root = os.path.join(t.dir, "maildirs")
    m = MESSAGES
    carl = courier_maildir(root, "carl", {
        "cur/1764158400.M1P10.host,S=%d:2,S" % len(m[0]): m[0],
        "cur/1764158500.M2P10.host:2,": m[1],
        "cur/1764158900.M9P10.host:2,S": m[3],   # listed by Courier, UID 4
        "cur/1764159000.M7P10.host:2,": m[2],    # not in the sizelist yet
        "new/1764159100.M8P10.host": m[4],       # delivered after the last login
    }, sizelist=("/3 5 1700000000\n"
                 "1764158400.M1P10.host,S=%d:2,S 80 1:1700000000:0\n"
                 "1764158500.M2P10.host:2, 54 2:1700000000:0\n"
                 "1764158700.M3P10.host:2,S 99 3:1700000000:0\n"   # deleted since
                 "1764158900.M9P10.host:2,S 20042 4:1700000000:0\n") % len(m[0]),
        uiddb="1 1234 9\n7 1764158400.M1P10.host,S=80\n8 1764158500.M2P10.host\n")
    cora = courier_maildir(root, "cora", {
        "cur/1764158400.M1P2+x.host:2,S": m[0],
        "cur/1764158300.M1P2.host:2,S": m[1],
    })
    chown_tree(root)
    for login in ("carl", "cora"):
        t.tool("tpops-useradd", login, "pw-" + login, login + "@example.com", login)
    r = t.tool("tpops-import", "courier", "--quiet", "carl", carl)
    assert b"2 messages Courier had not listed yet" in r.stdout, r.stdout
    t.tool("tpops-import", "courier", "--quiet", "cora", cora)
    t.start()
    uidls, sizes, bodies = pop3_view(t.port, "carl", "pw-carl")
    assert uidls[:3] == [b"UID1-1700000000", b"UID2-1700000000", b"UID4-1700000000"]
    assert uidls[3:] == [b"1764159000.M7P10.host", b"1764159100.M8P10.host"]
    assert [b.replace(b"\r\n", b"\n") for b, _ in bodies[:3]] == \
        [x.replace(b"\r\n", b"\n") for x in (m[0], m[1], m[3] + b"\n")]
    uidls, _, _ = pop3_view(t.port, "cora", "pw-cora")
    assert uidls == [b"1764158300.M1P2.host", b"1764158400.M1P2+2Bx.host"]

    # into the SQL store: the same list
    s = make_tpops("sql")
    s.tool("tpops-useradd", "carl", "pw-carl", "carl@example.com")
    s.tool("tpops-import", "courier", "--quiet", "--into-sql", "carl", carl)
    s.start()
    got = pop3_view(s.port, "carl", "pw-carl")[0]
    assert got[:3] == [b"UID1-1700000000", b"UID2-1700000000", b"UID4-1700000000"]
    assert got[3:] == [b"1764159000.M7P10.host", b"1764159100.M8P10.host"]


@pytest.mark.parametrize("engine", ["sqlite", "mysql"])
def test_import_into_each_sql_engine_and_dbinit_upgrade(make_tpops, tmpdir_shared, engine):
    """msg.uidl on both engines: tpops-dbinit adds it to a database made
    without it; imported messages keep their UIDLs, delivered ones get
    tpops's own; a delivered message whose own UIDL equals an imported one
    is given another."""
    from conftest import BACKENDS
    if engine not in BACKENDS:
        pytest.skip(f"{engine} backend not available")
    t = make_tpops("t-" + engine, backend=engine)
    t.sql("DROP TABLE msg_imported")
    t.sql("ALTER TABLE msg DROP COLUMN uidl" if engine == "mysql" else
          "DROP INDEX IF EXISTS msg_uid_listing")
    if engine == "sqlite":
        t.sql("ALTER TABLE msg DROP COLUMN uidl")
    t.tool("tpops-dbinit")
    assert t.sql("SELECT COUNT(*) FROM msg WHERE uidl IS NULL") == [(0,)]
    t.tool("tpops-useradd", "carl", "pw-carl", "carl@example.com")
    uid = t.sql("SELECT uid FROM \"user\" WHERE login = 'carl'")[0][0]
    # the message delivered after the import gets id 2, and so its own
    # UIDL 2.<uid>.<time>: the imported one has that UIDL already
    root = os.path.join(tmpdir_shared, "courier-" + engine)
    stamp = "20250101000000"
    clash = f"2.{uid}.{stamp}"
    md = courier_maildir(root, "carl", {"cur/1764158400.M1P10.host:2,S": MESSAGES[0]},
                         sizelist="/3 2 0\n1764158400.M1P10.host:2,S 80 1:0:0\n")
    chown_tree(root)
    t.tool("tpops-import", "courier", "--quiet", "--into-sql", "carl", md)
    t.sql("UPDATE msg SET uidl = ?", (clash,))
    t.store("carl@example.com", b"Subject: new\n\nnew\n")
    t.sql("UPDATE msg SET timestamp = ?", ("2025-01-01 00:00:00",))
    t.start()
    uidls = pop3_view(t.port, "carl", "pw-carl")[0]
    assert uidls[0] == clash.encode()
    assert len(uidls) == 2 and uidls[1] != clash.encode() and uidls[1].startswith(b"Z"), uidls


def test_interrupted_import_is_finished_by_the_next_run(make_tpops, tmpdir_shared):
    """SIGKILL in the middle of copying a Maildir: what is there is whole,
    and the next run imports the rest, nothing twice."""
    import signal
    import time
    from conftest import TOOL_ASAN, program
    t = make_tpops(backend="maildir")
    n = 1000
    files = {f"cur/{1764158400 + i}.M{i}P1.host:2,S": b"Subject: %d\n\nbody\n" % i
             for i in range(n)}
    sizelist = "/3 %d 1700000000\n" % (n + 1) + "".join(
        f"{1764158400 + i}.M{i}P1.host:2,S 20 {i + 1}:1700000000:0\n" for i in range(n))
    src = courier_maildir(os.path.join(tmpdir_shared, "src"), "carl", files, sizelist)
    chown_tree(os.path.join(tmpdir_shared, "src"))
    t.add_user("carl", "pw-carl", "carl@example.com")
    dest = os.path.join(t.dir, "maildirs", "carl")
    def copied():
        try:
            return len(os.listdir(os.path.join(dest, "cur")))
        except FileNotFoundError:
            return 0

    # killed as soon as the first messages are there (not after a fixed
    # time: on a fast machine the whole import takes less than 0.3 s)
    interrupted = False
    for _ in range(4):
        p = subprocess.Popen([program("tpops-import"), "-c", t.conf, "courier", "--quiet",
                              "--copy", "carl", src],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, ASAN_OPTIONS=TOOL_ASAN))
        deadline = time.monotonic() + 60
        while p.poll() is None and copied() == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
        if 0 < copied() < n:
            interrupted = True
            break
        if copied() == n:
            break
    # no message is visible half-written
    for name in os.listdir(os.path.join(dest, "cur")):
        with open(os.path.join(dest, "cur", name), "rb") as f:
            assert f.read().endswith(b"body\n"), name
    r = t.tool("tpops-import", "courier", "--quiet", "--copy", "carl", src)
    assert b"0 failed" in r.stdout, r.stdout
    assert len(os.listdir(os.path.join(dest, "cur"))) == n
    t.start()
    uidls = pop3_view(t.port, "carl", "pw-carl")[0]
    assert uidls == [b"UID%d-1700000000" % (i + 1) for i in range(n)]
    if not interrupted:
        pytest.skip("the import finished before it could be interrupted")


def test_pop3_import_over_tls(make_tpops, tmpdir_shared, cert):
    """--tls: POP3S from the first octet, the server's certificate checked
    (against --tls-ca here: the test certificate is self-signed). The
    source is a tpops with a certificate for 127.0.0.1."""
    crt, key = cert
    src = make_tpops("src", TLS_Cert=crt, TLS_Key=key, TLS_Port=free_port())
    src.add_user("alice", "secret")
    for m in MESSAGES:
        src.store("alice@example.com", m)
    src.start()
    want = pop3_view(src.port, "alice", "secret")
    ca = os.path.join(tmpdir_shared, "ca.pem")  # readable by the user the tool runs as
    shutil.copy(crt, ca)
    os.chmod(ca, 0o644)
    t = make_tpops("dst")
    t.add_user("alice", "secret")
    tls_port = src.settings["TLS_Port"]
    # not trusted without the CA
    r = t.tool("tpops-import", "pop3", "--into-sql", "--quiet", "--host", "127.0.0.1",
               "--port", tls_port, "--tls", "alice", "secret", check=False)
    assert r.returncode == 75 and b"TLS: self-signed certificate" in r.stderr, r.stderr
    # the certificate must name the host
    r = t.tool("tpops-import", "pop3", "--into-sql", "--quiet", "--host", "localhost",
               "--port", tls_port, "--tls", "--tls-ca", ca, "alice", "secret", check=False)
    assert r.returncode == 75 and b"TLS:" in r.stderr, r.stderr
    t.tool("tpops-import", "pop3", "--into-sql", "--quiet", "--host", "127.0.0.1",
           "--port", tls_port, "--tls", "--tls-ca", ca, "alice", "secret")
    t.start()
    got = pop3_view(t.port, "alice", "secret")
    assert got[0] == want[0] and got[2] == want[2]
