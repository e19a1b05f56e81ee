"""The admin tools (tpops-useradd, -userdel, -passwd, -users, -dbinit) and
the password schemes the daemon verifies: what an administrator sees and
what ends up in the `user` table."""
import hashlib
import os
import re
import subprocess

import pytest

from conftest import TOOL_ASAN, Client, program

TOOLS = ["tpops-useradd", "tpops-userdel", "tpops-passwd", "tpops-users",
         "tpops-dbinit", "tpops-store"]
PROGRAMS = TOOLS + ["tpops"]

EX_USAGE, EX_NOUSER, EX_CONFIG = 64, 67, 78

SHA512_CRYPT = re.compile(r"^\{SHA512-CRYPT\}\$6\$(rounds=\d+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}$")


def run(name, *args, input=None):
    """Runs a program without the -c the fixture adds."""
    env = dict(os.environ, ASAN_OPTIONS=TOOL_ASAN,
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    return subprocess.run([program(name), *map(str, args)], input=input,
                          capture_output=True, env=env, timeout=60)


def users(t):
    return t.sql('SELECT uid, login, passwd, mail, maildir, quota FROM "user" ORDER BY uid')


def passwd_of(t, login):
    rows = t.sql('SELECT passwd FROM "user" WHERE login = ?', (login,))
    assert len(rows) == 1, rows
    return rows[0][0]


def pop_login(t, user, password):
    """The reply to PASS, over a fresh connection."""
    c = Client(t.port)
    try:
        assert c.cmd(b"USER " + user.encode()).startswith(b"+OK")
        reply = c.cmd(b"PASS " + password.encode())
        c.cmd("QUIT")
        return reply
    finally:
        c.close()


def assert_login(t, user, password, others=("wrong", "")):
    reply = pop_login(t, user, password)
    assert reply.startswith(b"+OK"), (user, reply)
    for bad in others:
        reply = pop_login(t, user, bad)
        # "PASS" without an argument may be refused as a syntax error
        assert reply.startswith(b"-ERR [AUTH]" if bad else b"-ERR"), (user, bad, reply)


def apop_login(t, user, password):
    c = Client(t.port)
    try:
        stamp = re.search(rb"<[^>]*>", c.greeting).group(0)
        digest = hashlib.md5(stamp + password.encode()).hexdigest()
        reply = c.cmd(f"APOP {user} {digest}")
        c.cmd("QUIT")
        return reply
    finally:
        c.close()


# ---- tpops-useradd ----

def test_useradd_default_is_sha512_crypt(make_tpops):
    t = make_tpops()
    r = t.tool("tpops-useradd", "carol", "Tr0ub4dor&3", "carol@example.com")
    assert r.returncode == 0
    stored = passwd_of(t, "carol")
    assert SHA512_CRYPT.match(stored), stored
    assert "Tr0ub4dor" not in stored
    row = t.sql('SELECT login, mail, maildir, quota FROM "user" WHERE login = ?', ("carol",))
    assert row == [("carol", "carol@example.com", "", 0)]
    # a second user with the same password gets another salt
    t.tool("tpops-useradd", "dave", "Tr0ub4dor&3", "dave@example.com")
    assert passwd_of(t, "dave") != stored
    t.start()
    assert_login(t, "carol", "Tr0ub4dor&3", others=("wrong", "", "tr0ub4dor&3", "Tr0ub4dor&"))
    assert_login(t, "dave", "Tr0ub4dor&3")
    # a hashed password cannot serve APOP
    assert apop_login(t, "carol", "Tr0ub4dor&3").startswith(b"-ERR")


def test_useradd_maildir_argument(make_tpops):
    t = make_tpops()
    t.tool("tpops-useradd", "erin", "pw", "erin@example.com", "/var/mail/erin/")
    row = t.sql('SELECT maildir FROM "user" WHERE login = ?', ("erin",))
    assert row == [("/var/mail/erin/",)]


def test_useradd_unusual_logins(make_tpops):
    """Logins as long as RFC 2449 allows an argument, with 8-bit octets or
    punctuation, are stored as given and can log in."""
    t = make_tpops()
    logins = ["x" * 40, "user@example.com", "\u00fcmlaut", "a.b-c_d+e"]
    for i, login in enumerate(logins):
        t.tool("tpops-useradd", login, "pw", f"u{i}@example.com")
    assert sorted(u[1] for u in users(t)) == sorted(logins)
    t.start()
    for login in logins:
        assert_login(t, login, "pw")


def test_useradd_password_from_stdin(make_tpops):
    t = make_tpops()
    secret = "pass word with spaces"
    r = t.tool("tpops-useradd", "frank", "-", "frank@example.com", input=secret.encode() + b"\n")
    assert r.returncode == 0
    assert secret.encode() not in r.stdout + r.stderr
    assert SHA512_CRYPT.match(passwd_of(t, "frank"))
    # CRLF from a Windows-made file is a line end too
    t.tool("tpops-useradd", "--plain", "gina", "-", "gina@example.com", input=b"gpw\r\n")
    assert passwd_of(t, "gina") == "{PLAIN}gpw"
    # no password on stdin: a usage error, and no user
    before = users(t)
    r = t.tool("tpops-useradd", "henry", "-", "henry@example.com", input=b"", check=False)
    assert r.returncode == EX_USAGE, r
    assert users(t) == before
    t.start()
    assert_login(t, "frank", secret, others=("wrong", "pass", "-"))
    assert_login(t, "gina", "gpw")


def test_useradd_plain(make_tpops):
    t = make_tpops()
    t.tool("tpops-useradd", "--plain", "ivan", "pl@in", "ivan@example.com")
    assert passwd_of(t, "ivan") == "{PLAIN}pl@in"
    t.start()
    assert_login(t, "ivan", "pl@in", others=("wrong", "", "{PLAIN}pl@in"))
    assert apop_login(t, "ivan", "pl@in").startswith(b"+OK")
    assert apop_login(t, "ivan", "other").startswith(b"-ERR")


@pytest.mark.parametrize("scheme,prefix", [
    ("BLF-CRYPT", r"\{BLF-CRYPT\}\$2[aby]\$\d\d\$"),
    ("YESCRYPT", r"\{YESCRYPT\}\$y\$"),
    ("ARGON2ID", r"\{ARGON2ID\}\$argon2id\$"),
    ("SHA512-CRYPT", r"\{SHA512-CRYPT\}\$6\$"),
    ("PLAIN", r"\{PLAIN\}s3cr\.et$"),
])
def test_useradd_scheme(make_tpops, scheme, prefix):
    t = make_tpops()
    t.tool("tpops-useradd", "--scheme", scheme, "jane", "s3cr.et", "jane@example.com")
    stored = passwd_of(t, "jane")
    assert re.match(prefix, stored), stored
    if scheme != "PLAIN":
        assert "s3cr.et" not in stored
    t.start()
    assert_login(t, "jane", "s3cr.et", others=("wrong", "", "s3cr.e", "s3cr.et "))


def test_useradd_unknown_scheme(make_tpops):
    t = make_tpops()
    before = users(t)
    r = t.tool("tpops-useradd", "--scheme", "MD5-NONSENSE", "kim", "pw", "kim@example.com",
               check=False)
    assert r.returncode == EX_USAGE
    assert b"MD5-NONSENSE" in r.stderr
    assert users(t) == before


@pytest.mark.parametrize("login,mail", [
    ("alice", "other@example.com"),   # same login
    ("other", "alice@example.com"),   # same address
    ("alice", "alice@example.com"),   # both
])
def test_useradd_duplicate(make_tpops, login, mail):
    t = make_tpops()
    t.tool("tpops-useradd", "alice", "secret", "alice@example.com")
    before = users(t)
    r = t.tool("tpops-useradd", "--plain", login, "newpw", mail, check=False)
    assert r.returncode not in (0, EX_USAGE, EX_CONFIG) and r.returncode != 75, r
    assert b"already exists" in r.stderr
    assert r.stdout == b""
    assert users(t) == before
    t.start()
    assert_login(t, "alice", "secret", others=("newpw",))


@pytest.mark.parametrize("args", [
    (),
    ("onlylogin",),
    ("login", "pw"),
    ("login", "pw", "a@example.com", "/maildir", "extra"),
    ("", "pw", "a@example.com"),
    ("login", "pw", ""),
    ("--quota", "lots", "login", "pw", "a@example.com"),
    ("--quota", "-5", "login", "pw", "a@example.com"),
    # USER takes one word: such a login could never log in
    ("two words", "pw", "a@example.com"),
    ("tab\there", "pw", "a@example.com"),
    ("new\nline", "pw", "a@example.com"),
])
def test_useradd_usage(make_tpops, args):
    t = make_tpops()
    r = t.tool("tpops-useradd", *args, check=False)
    assert r.returncode == EX_USAGE, r
    assert r.stderr != b""
    assert users(t) == []


def test_useradd_quota(make_tpops):
    t = make_tpops()
    t.tool("tpops-useradd", "--quota", "123456", "lena", "pw", "lena@example.com")
    assert t.sql('SELECT quota FROM "user" WHERE login = ?', ("lena",)) == [(123456,)]


# ---- tpops-userdel ----

def test_userdel(make_tpops):
    t = make_tpops()
    t.tool("tpops-useradd", "alice", "secret", "alice@example.com")
    t.tool("tpops-useradd", "bob", "pw", "bob@example.com")
    t.start()
    assert_login(t, "alice", "secret")
    r = t.tool("tpops-userdel", "alice")
    assert r.returncode == 0
    assert [u[1] for u in users(t)] == ["bob"]
    assert pop_login(t, "alice", "secret").startswith(b"-ERR [AUTH]")
    assert_login(t, "bob", "pw")
    # the address is free again
    t.tool("tpops-useradd", "alice2", "pw2", "alice@example.com")
    # unknown login: an error, nothing removed
    before = users(t)
    r = t.tool("tpops-userdel", "alice", check=False)
    assert r.returncode == EX_NOUSER, r
    assert b"alice" in r.stderr
    assert users(t) == before
    for args in ((), ("a", "b")):
        r = t.tool("tpops-userdel", *args, check=False)
        assert r.returncode == EX_USAGE
    assert users(t) == before


# ---- tpops-passwd ----

def test_passwd(make_tpops):
    t = make_tpops()
    t.tool("tpops-useradd", "alice", "old-secret", "alice@example.com")
    t.tool("tpops-useradd", "bob", "bobpw", "bob@example.com")
    t.start()
    assert_login(t, "alice", "old-secret")
    bob_before = passwd_of(t, "bob")
    r = t.tool("tpops-passwd", "alice", "new-secret")
    assert r.returncode == 0
    assert SHA512_CRYPT.match(passwd_of(t, "alice"))
    assert pop_login(t, "alice", "old-secret").startswith(b"-ERR [AUTH]")
    assert_login(t, "alice", "new-secret", others=("old-secret", ""))
    assert passwd_of(t, "bob") == bob_before
    # from stdin, and --plain
    t.tool("tpops-passwd", "alice", "-", input=b"stdin-secret\n")
    assert_login(t, "alice", "stdin-secret", others=("new-secret",))
    t.tool("tpops-passwd", "--plain", "alice", "plain-secret")
    assert passwd_of(t, "alice") == "{PLAIN}plain-secret"
    assert_login(t, "alice", "plain-secret", others=("stdin-secret",))
    assert apop_login(t, "alice", "plain-secret").startswith(b"+OK")
    t.tool("tpops-passwd", "--scheme", "YESCRYPT", "alice", "yes-secret")
    assert passwd_of(t, "alice").startswith("{YESCRYPT}$y$")
    assert_login(t, "alice", "yes-secret", others=("plain-secret",))
    # unknown login: error, nothing changed
    before = users(t)
    r = t.tool("tpops-passwd", "nosuch", "pw", check=False)
    assert r.returncode == EX_NOUSER, r
    assert b"nosuch" in r.stderr
    for args in ((), ("alice",), ("alice", "pw", "extra")):
        assert t.tool("tpops-passwd", *args, check=False).returncode == EX_USAGE
    r = t.tool("tpops-passwd", "--scheme", "ROT13", "alice", "pw", check=False)
    assert r.returncode == EX_USAGE
    assert users(t) == before


# ---- tpops-users ----

def test_users_lists_without_passwords(make_tpops):
    t = make_tpops()
    t.tool("tpops-useradd", "alice", "alice-secret", "alice@example.com")
    t.tool("tpops-useradd", "--plain", "bob", "bob-secret", "bob@example.com", "/srv/mail/bob")
    t.tool("tpops-useradd", "--scheme", "BLF-CRYPT", "--quota", "1000", "carol", "carol-secret",
           "carol@example.com")
    t.sql('INSERT INTO "user" (login, passwd, mail) VALUES (?, ?, ?)',
          ("dave", "seed-plain-secret", "dave@example.com"))
    r = t.tool("tpops-users")
    out = r.stdout.decode()
    for login, mail in (("alice", "alice@example.com"), ("bob", "bob@example.com"),
                        ("carol", "carol@example.com"), ("dave", "dave@example.com")):
        line = [l for l in out.splitlines() if login in l.split("\t")]
        assert len(line) == 1, out
        assert mail in line[0]
    assert "/srv/mail/bob" in out
    assert "1000" in out
    everything = r.stdout + r.stderr
    for login, in t.sql('SELECT login FROM "user"'):
        stored = passwd_of(t, login)
        data = stored.split("}", 1)[-1]
        assert data.encode() not in everything, (login, out)
        # nor any piece of a hash (salt or digest)
        for piece in re.split(r"[$,=]", data):
            if len(piece) >= 6:
                assert piece.encode() not in everything, (login, piece, out)
    for secret in ("alice-secret", "bob-secret", "carol-secret", "seed-plain-secret"):
        assert secret.encode() not in everything
    assert t.tool("tpops-users", "extra", check=False).returncode == EX_USAGE


def test_users_empty(make_tpops):
    t = make_tpops()
    r = t.tool("tpops-users")
    assert r.returncode == 0
    assert r.stdout.strip() == b""


# ---- tpops-dbinit ----

def test_dbinit_idempotent(make_tpops):
    t = make_tpops()   # ran tpops-dbinit once already
    t.tool("tpops-useradd", "alice", "secret", "alice@example.com")
    assert t.store("alice@example.com", b"Subject: kept\n\nbody\n") == 0
    users_before = users(t)
    msgs_before = t.sql("SELECT id, uid, timestamp, header, body, size FROM msg")
    for _ in range(2):
        r = t.tool("tpops-dbinit")
        assert r.returncode == 0
    assert users(t) == users_before
    assert t.sql("SELECT id, uid, timestamp, header, body, size FROM msg") == msgs_before
    assert t.sql("PRAGMA journal_mode") == [("wal",)]
    tables = {r[0] for r in t.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"user", "msg", "locks"} <= tables
    assert t.tool("tpops-dbinit", "extra", check=False).returncode == EX_USAGE
    t.start()
    assert_login(t, "alice", "secret")


def test_dbinit_creates_database(make_tpops):
    t = make_tpops()
    os.remove(t.settings["SQLite_Path"])
    r = t.tool("tpops-dbinit")
    assert r.returncode == 0
    assert os.path.exists(t.settings["SQLite_Path"])
    t.tool("tpops-useradd", "alice", "secret", "alice@example.com")
    assert [u[1] for u in users(t)] == ["alice"]


def test_dbinit_refuses_logins_that_differ_only_in_case(make_tpops):
    """A database made before the login rule (no NOCASE unique indexes)
    may hold "alice" and "ALICE" as two users, which the rule makes one:
    the daemon refuses to start on it, and tpops-dbinit's upgrade names
    them and says what to do instead of failing on a constraint."""
    t = make_tpops()
    t.sql("DROP INDEX user_login_nocase")
    t.sql("DROP INDEX user_mail_nocase")
    t.tool("tpops-useradd", "alice", "secret", "alice@example.com")
    t.tool("tpops-useradd", "ALICE", "other", "ALICE@example.org")
    t.tool("tpops-useradd", "bob", "pw", "bob@example.com")
    uids = dict(t.sql('SELECT login, uid FROM "user"'))
    with pytest.raises(AssertionError) as refused:
        t.start()
    assert "tpops-dbinit" in str(refused.value), refused.value
    t.proc = None
    t.log.close()
    r = t.tool("tpops-dbinit", check=False)
    assert r.returncode == 65, r  # EX_DATAERR
    err = r.stderr.decode()
    assert f'"alice" (uid {uids["alice"]})' in err and f'"ALICE" (uid {uids["ALICE"]})' in err, err
    assert "bob" not in err, err
    assert "UNIQUE constraint" not in err and "tpops-dbinit again" in err, err
    # nothing was changed
    assert t.sql("SELECT name FROM sqlite_master WHERE name = 'user_login_nocase'") == []
    assert len(users(t)) == 3
    # addresses too
    t.sql('UPDATE "user" SET login = \'alice2\' WHERE uid = ?', (uids["ALICE"],))
    t.sql('UPDATE "user" SET mail = \'Bob@Example.com\' WHERE uid = ?', (uids["ALICE"],))
    r = t.tool("tpops-dbinit", check=False)
    assert r.returncode == 65, r
    assert "addresses" in r.stderr.decode() and "Bob@Example.com" in r.stderr.decode(), r.stderr
    # resolved as it says: the upgrade goes through, the rule holds
    t.sql('UPDATE "user" SET mail = \'alice2@example.org\' WHERE uid = ?', (uids["ALICE"],))
    t.tool("tpops-dbinit")
    assert len(t.sql("SELECT name FROM sqlite_master WHERE name LIKE 'user_%_nocase'")) == 2
    t.start()
    assert pop_login(t, "ALICE", "secret").startswith(b"+OK")


# ---- what every program shares ----

@pytest.mark.parametrize("name", PROGRAMS)
def test_help_and_version(name):
    r = run(name, "--help")
    assert r.returncode == 0, r
    assert b"usage" in r.stdout.lower(), r.stdout
    assert r.stderr == b""
    r = run(name, "--version")
    assert r.returncode == 0, r
    assert re.search(rb"\d+\.\d+", r.stdout), r.stdout
    assert b"tpops" in r.stdout
    assert r.stderr == b""
    # -h is --help
    assert run(name, "-h").stdout == run(name, "--help").stdout


@pytest.mark.parametrize("name", PROGRAMS)
def test_unknown_option(make_tpops, name):
    t = make_tpops()
    for opt in ("--no-such-option", "-Z"):
        r = run(name, "-c", t.conf, opt)
        assert r.returncode == EX_USAGE, r
        assert b"usage" in r.stderr.lower()
        assert r.stdout == b""


@pytest.mark.parametrize("name", PROGRAMS)
def test_bad_config(make_tpops, name):
    t = make_tpops()
    args = {"tpops-useradd": ("u", "pw", "u@example.com"), "tpops-userdel": ("u",),
            "tpops-passwd": ("u", "pw"), "tpops-store": ("u@example.com",)}.get(name, ())
    bad = os.path.join(t.dir, "bad.conf")
    good = open(t.conf).read()
    cases = [
        (good + "NoSuchKey: 1\n", len(good.splitlines()) + 1, b"NoSuchKey"),
        ("# comment\n\n" + good.replace("Port: ", "Port: eleven # "), None, b"Port"),
        (good + "Database: oracle\n", len(good.splitlines()) + 1, b"Database"),
    ]
    for text, line, word in cases:
        with open(bad, "w") as f:
            f.write(text)
        if line is None:
            line = 2 + next(i for i, l in enumerate(good.splitlines(), 1) if l.startswith("Port:"))
        r = run(name, "-c", bad, *args, input=b"Subject: x\n\nx\n")
        assert r.returncode == EX_CONFIG, (text, r)
        assert f"{bad}:{line}:".encode() in r.stderr, r.stderr
        assert word in r.stderr
    # a missing file is a configuration error too, naming the file
    missing = os.path.join(t.dir, "missing.conf")
    r = run(name, "-c", missing, *args, input=b"Subject: x\n\nx\n")
    assert r.returncode == EX_CONFIG, r
    assert missing.encode() in r.stderr
    assert users(t) == []
    assert t.sql("SELECT COUNT(*) FROM msg") == [(0,)]


# ---- stored password forms the daemon verifies ----

def test_daemon_verifies_stored_forms(make_tpops):
    t = make_tpops()
    t.tool("tpops-useradd", "hashed", "h-secret", "hashed@example.com")
    t.tool("tpops-useradd", "--plain", "plain", "p-secret", "plain@example.com")
    crypt_hash = passwd_of(t, "hashed")[len("{SHA512-CRYPT}"):]
    # rows as the seed's tools wrote them (plain text, no prefix), and a
    # crypt(3) hash without a prefix, as other tools write them
    t.sql('INSERT INTO "user" (login, passwd, mail) VALUES (?, ?, ?)',
          ("seed", "seed-secret", "seed@example.com"))
    t.sql('INSERT INTO "user" (login, passwd, mail) VALUES (?, ?, ?)',
          ("rawcrypt", crypt_hash, "rawcrypt@example.com"))
    # an empty column means "no password", not "the empty password"
    t.sql('INSERT INTO "user" (login, passwd, mail) VALUES (?, ?, ?)',
          ("empty", "", "empty@example.com"))
    t.start()
    assert_login(t, "hashed", "h-secret", others=("wrong", "", crypt_hash, passwd_of(t, "hashed")))
    assert_login(t, "plain", "p-secret", others=("wrong", "", "{PLAIN}p-secret"))
    assert_login(t, "seed", "seed-secret", others=("wrong", "", "seed-secre", "seed-secret2"))
    assert_login(t, "rawcrypt", "h-secret", others=("wrong", crypt_hash))
    # an empty stored password lets nobody in
    assert pop_login(t, "empty", "").startswith(b"-ERR")
    assert pop_login(t, "empty", "x").startswith(b"-ERR")
    # APOP works for plain text stored either way, not for a hash
    assert apop_login(t, "plain", "p-secret").startswith(b"+OK")
    assert apop_login(t, "seed", "seed-secret").startswith(b"+OK")
    assert apop_login(t, "hashed", "h-secret").startswith(b"-ERR")
