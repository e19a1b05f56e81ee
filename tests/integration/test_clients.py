"""Real POP3 clients against the daemon: Python's poplib, curl and
fetchmail."""
import os
import poplib
import pwd
import re
import subprocess
import tempfile

import pytest


MESSAGES = [
    b"From: a@example.com\nTo: alice@example.com\nSubject: first\n\nHello\n.hidden dot\n"
    b"..two\n.\n8-bit: \xe4\xf6\xfc\xff\n" + b"W" * 1200 + b"\nno newline at the end",
    b"From: b@example.com\r\nSubject: second\r\n\r\ncrlf body\r\n.\r\n\r\n",
    b"Subject: third, empty body\n\n",
]


def wire(msg):
    out = re.sub(rb"\r?\n", b"\r\n", msg)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def fill(t, user="alice@example.com"):
    for m in MESSAGES:
        t.store(user, m)


# -- poplib --

def test_poplib_full_session(tpops):
    fill(tpops)
    p = poplib.POP3("127.0.0.1", tpops.port, timeout=10)
    try:
        assert p.getwelcome().startswith(b"+OK")
        caps = p.capa()
        for name in ("TOP", "USER", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE",
                     "IMPLEMENTATION"):
            assert name in caps, caps
        p.user("alice")
        assert p.pass_("secret").startswith(b"+OK")
        sizes = [len(wire(m)) for m in MESSAGES]
        assert p.stat() == (3, sum(sizes))
        _, listing, _ = p.list()
        assert listing == [b"%d %d" % (i + 1, s) for i, s in enumerate(sizes)]
        assert p.list(2) == b"+OK 2 %d" % sizes[1]
        _, uidls, _ = p.uidl()
        assert len(uidls) == 3 and len({u.split()[1] for u in uidls}) == 3
        for i, m in enumerate(MESSAGES, 1):
            _, lines, octets = p.retr(i)
            assert b"".join(l + b"\r\n" for l in lines) == wire(m)
        _, lines, _ = p.top(1, 0)
        assert lines == [b"From: a@example.com", b"To: alice@example.com",
                         b"Subject: first", b""]
        _, lines, _ = p.top(1, 2)
        assert lines[-2:] == [b"Hello", b".hidden dot"]
        assert p.noop().startswith(b"+OK")
        assert p.dele(1).startswith(b"+OK")
        with pytest.raises(poplib.error_proto, match=r"-ERR"):
            p.retr(1)
        assert p.stat() == (2, sizes[1] + sizes[2])
        assert p.rset().startswith(b"+OK")
        assert p.stat() == (3, sum(sizes))
        assert p.dele(2).startswith(b"+OK")
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()
    p = poplib.POP3("127.0.0.1", tpops.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    assert p.stat() == (2, len(wire(MESSAGES[0])) + len(wire(MESSAGES[2])))
    _, new_uidls, _ = p.uidl()
    assert [u.split()[1] for u in new_uidls] == [uidls[0].split()[1], uidls[2].split()[1]]
    p.quit()


def test_poplib_apop(tpops):
    fill(tpops, "bob@example.com")
    p = poplib.POP3("127.0.0.1", tpops.port, timeout=10)
    assert re.search(rb"<[^<>]+@tpops\.test>", p.getwelcome())
    assert p.apop("bob", "pw").startswith(b"+OK")
    assert p.stat()[0] == 3
    _, lines, _ = p.retr(2)
    assert b"".join(l + b"\r\n" for l in lines) == wire(MESSAGES[1])
    p.quit()
    p = poplib.POP3("127.0.0.1", tpops.port, timeout=10)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.apop("bob", "wrong")
    p.quit()


def test_poplib_errors(tpops):
    p = poplib.POP3("127.0.0.1", tpops.port, timeout=10)
    p.user("alice")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.pass_("wrong")
    p.user("alice")
    p.pass_("secret")
    q = poplib.POP3("127.0.0.1", tpops.port, timeout=10)
    q.user("alice")
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        q.pass_("secret")
    q.quit()
    p.quit()


# -- curl --

def curl(t, url):
    return subprocess.run(["curl", "-s", "-S", "--max-time", "20", url],
                          capture_output=True, timeout=30)


# curl logs in with SASL when CAPA offers it, else with APOP whenever the
# greeting has a timestamp (it always has), else with USER/PASS; it does not
# fall back from a failed APOP. bob's password is stored in plain text, so
# APOP works; alice's is hashed and needs SASL PLAIN.
@pytest.mark.parametrize("user,password", [("bob", "pw"), ("alice", "secret")])
def test_curl_retrieves_byte_for_byte(tpops, user, password):
    fill(tpops, f"{user}@example.com")
    base = f"pop3://{user}:{password}@127.0.0.1:{tpops.port}"
    for i, m in enumerate(MESSAGES, 1):
        r = curl(tpops, f"{base}/{i}")
        assert r.returncode == 0, r.stderr
        assert r.stdout == wire(m), f"message {i}"
    # the listing too
    r = curl(tpops, f"{base}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"".join(b"%d %d\r\n" % (i, len(wire(m)))
                                for i, m in enumerate(MESSAGES, 1))
    # a wrong password fails
    r = curl(tpops, f"pop3://{user}:wrong@127.0.0.1:{tpops.port}/1")
    assert r.returncode != 0


# -- fetchmail --

def run_fetchmail(t, home, outdir):
    rc = os.path.join(home, "fetchmailrc")
    # the MDA writes each message to a file of its own
    mda = f"/bin/sh -c 'cat > \"$(mktemp {outdir}/msg.XXXXXX)\"'"
    local = pwd.getpwuid(os.geteuid()).pw_name
    with open(rc, "w") as f:
        f.write(f'poll 127.0.0.1 protocol POP3 port {t.port} uidl\n'
                f'  user "alice" there with password "secret" is "{local}" here\n'
                # no certificate is configured: plain POP3, no STLS attempt
                f'  sslproto ""\n')
    os.chmod(rc, 0o600)
    r = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--nosyslog", "--keep",
                        "--mda", mda, "--idfile", os.path.join(home, "fetchids")],
                       capture_output=True, timeout=60,
                       env=dict(os.environ, HOME=home, FETCHMAILHOME=home))
    return r


def delivered(outdir):
    out = []
    for name in sorted(os.listdir(outdir)):
        with open(os.path.join(outdir, name), "rb") as f:
            out.append(f.read())
    return out


def test_fetchmail_keep_delivers_each_message_once(tpops):
    fill(tpops)
    home = tempfile.mkdtemp(prefix="tpops-fetchmail-")
    outdir = os.path.join(home, "out")
    os.mkdir(outdir)
    r = run_fetchmail(tpops, home, outdir)
    assert r.returncode == 0, r.stderr.decode(errors="replace") + r.stdout.decode(errors="replace")
    got = delivered(outdir)
    assert len(got) == 3, got
    for m in MESSAGES:
        subject = re.search(rb"Subject: [^\r\n]*", m).group(0)
        matches = [g for g in got if subject in g]
        assert len(matches) == 1, subject
        # the message arrives whole (fetchmail hands the MDA LF line ends)
        body = m.split(b"\n\n", 1)[1] if b"\n\n" in m else m.split(b"\r\n\r\n", 1)[1]
        assert body.replace(b"\r\n", b"\n").rstrip(b"\n") in matches[0].replace(b"\r\n", b"\n")
    # --keep left them on the server, and a second run fetches nothing new
    r = run_fetchmail(tpops, home, outdir)
    assert r.returncode == 1, r  # 1: no mail
    assert len(delivered(outdir)) == 3
    # a new message is fetched, and only it
    tpops.store("alice@example.com", b"Subject: fourth\n\nnew\n")
    r = run_fetchmail(tpops, home, outdir)
    assert r.returncode == 0, r.stderr
    got = delivered(outdir)
    assert len(got) == 4
    assert sum(b"Subject: fourth" in g for g in got) == 1
    p = poplib.POP3("127.0.0.1", tpops.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    assert p.stat()[0] == 4
    p.quit()
