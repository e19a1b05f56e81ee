"""A new Maildir user can log in before the first delivery: tpops-useradd
makes the Maildir (tmp/ new/ cur/, as the daemon's user), and the daemon
makes it at login when only the Maildir itself is missing, serving 0
messages. It never makes the directories above it: a missing parent (an
unmounted volume, a wrong path) stays a clear error. Paths tpops-useradd
cannot use are refused with nothing added."""
import os
import pwd
import shutil
import sqlite3
import subprocess

from backends import maildir as maildir_backend
from conftest import RUN_USER, Client

MSG = b"Subject: first\n\nthe first delivery\n"


def subdirs_made(path):
    """The Maildir at path is complete, 0700 and the daemon's user's."""
    uid = pwd.getpwnam(RUN_USER).pw_uid
    for sub in ("", "tmp", "new", "cur"):
        st = os.stat(os.path.join(path, sub))
        assert st.st_mode & 0o777 == 0o700, (sub, oct(st.st_mode))
        assert st.st_uid == uid, (sub, st.st_uid)


def stat(t, user, password="pw"):
    c = Client(t.port)
    try:
        assert c.cmd(f"USER {user}").startswith(b"+OK")
        reply = c.cmd(f"PASS {password}")
        if not reply.startswith(b"+OK"):
            return reply
        result = c.cmd("STAT")
        assert c.cmd("QUIT").startswith(b"+OK")
        return result
    finally:
        c.close()


def users(t):
    con = sqlite3.connect(t.settings["SQLite_Path"])
    try:
        return [r[0] for r in con.execute('SELECT login FROM "user" ORDER BY login')]
    finally:
        con.close()


def test_useradd_makes_the_maildir(make_tpops):
    t = make_tpops(backend="maildir")
    root = maildir_backend.maildir_root(t)
    t.tool("tpops-useradd", "bob", "pw", "bob@example.com", "bob")
    # a domain directory above it is made as well, as a delivery would
    t.tool("tpops-useradd", "carol", "pw", "carol@example.com", "example.com/carol/")
    subdirs_made(os.path.join(root, "bob"))
    subdirs_made(os.path.join(root, "example.com", "carol"))
    t.start()
    # the reported case: curl lists an empty mailbox instead of [SYS/PERM]
    r = subprocess.run(["curl", "-sS", "--max-time", "30",
                        f"pop3://bob:pw@127.0.0.1:{t.port}/"], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == b"", r  # LIST: no messages
    assert stat(t, "carol") == b"+OK 0 0"
    assert t.store("bob@example.com", MSG) == 0
    assert stat(t, "bob").startswith(b"+OK 1 ")
    # an existing Maildir (mail moved from elsewhere) is used as it is
    assert t.tool("tpops-useradd", "bobby", "pw", "bobby@example.com", "bob").returncode == 0
    assert len(os.listdir(os.path.join(root, "bob", "new"))) == 1
    assert "Maildrop not available" not in t.read_log()


def test_useradd_refuses_a_maildir_it_cannot_use(make_tpops):
    t = make_tpops(backend="maildir")
    root = maildir_backend.maildir_root(t)
    outside = os.path.join(t.dir, "outside")
    os.symlink(t.dir, os.path.join(root, "escape"))
    with open(os.path.join(root, "plainfile"), "w"):
        pass
    for path, reason in [("../outside", b'("..")'), (outside, b"outside MaildirRoot"),
                         ("escape/x", b"symlink"), ("plainfile", b"plainfile"),
                         (".", b"MaildirRoot itself")]:
        r = t.tool("tpops-useradd", "dave", "pw", "dave@example.com", path, check=False)
        assert r.returncode == 65, (path, r)
        assert reason in r.stderr and b"dave not added" in r.stderr, (path, r.stderr)
    assert users(t) == []
    assert not os.path.exists(outside) and not os.path.exists(os.path.join(t.dir, "x"))
    # a SQL mailbox has no Maildir to make: the argument is only stored
    s = make_tpops(name="sql")
    s.tool("tpops-useradd", "erin", "pw", "erin@example.com", "/nonexistent/erin/")
    assert users(s) == ["erin"] and not os.path.exists("/nonexistent")


def test_login_makes_a_missing_maildir(make_tpops):
    """A user whose Maildir is not there yet (added before this version,
    by SQL, or the directory was removed): the daemon makes it at login."""
    t = make_tpops(backend="maildir")
    root = maildir_backend.maildir_root(t)
    t.tool("tpops-useradd", "bob", "pw", "bob@example.com", "bob")
    shutil.rmtree(os.path.join(root, "bob"))
    t.start()
    assert stat(t, "bob") == b"+OK 0 0"
    subdirs_made(os.path.join(root, "bob"))
    assert "Maildir bob made for bob" in t.read_log()
    assert t.store("bob@example.com", MSG) == 0
    assert stat(t, "bob").startswith(b"+OK 1 ")


def test_login_never_makes_the_directories_above(make_tpops):
    t = make_tpops(backend="maildir")
    root = maildir_backend.maildir_root(t)
    t.tool("tpops-useradd", "dave", "pw", "dave@example.com", "gone.example/dave")
    shutil.rmtree(os.path.join(root, "gone.example"))
    t.start()
    assert stat(t, "dave").startswith(b"-ERR [SYS/PERM] Maildrop not available")
    assert not os.path.exists(os.path.join(root, "gone.example"))
    log = t.read_log()
    assert "Maildir gone.example/dave does not exist, and neither does the directory it " \
        "would be made in" in log, log
    # the daemon still serves others
    t.tool("tpops-useradd", "erin", "pw", "erin@example.com", "erin")
    assert stat(t, "erin") == b"+OK 0 0"


def test_without_maildir_root_absolute_paths(make_tpops):
    """No MaildirRoot: absolute paths, the same rules."""
    t = make_tpops(Mailbox="Maildir")
    base = os.path.join(t.dir, "mail")
    t.tool("tpops-useradd", "bob", "pw", "bob@example.com", os.path.join(base, "bob"))
    subdirs_made(os.path.join(base, "bob"))
    t.tool("tpops-useradd", "carol", "pw", "carol@example.com", os.path.join(base, "carol"))
    t.tool("tpops-useradd", "dave", "pw", "dave@example.com", os.path.join(base, "sub", "dave"))
    shutil.rmtree(os.path.join(base, "carol"))
    shutil.rmtree(os.path.join(base, "sub"))
    t.start()
    assert stat(t, "bob") == b"+OK 0 0"
    assert stat(t, "carol") == b"+OK 0 0"
    subdirs_made(os.path.join(base, "carol"))
    assert stat(t, "dave").startswith(b"-ERR [SYS/PERM]")
    assert not os.path.exists(os.path.join(base, "sub"))
