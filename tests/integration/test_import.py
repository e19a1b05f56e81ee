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
from conftest import IS_ROOT, RUN_USER, RUN_GROUP, make_dir

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
