"""TLS with real clients and a real certificate: STLS (RFC 2595) on the
POP3 port and implicit TLS (RFC 8314) on the POP3S port; the STARTTLS
command-injection class; protocol versions; RequireTLS and its loopback
exemption; every password scheme over TLS."""
import os
import poplib
import re
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest

from conftest import program
from pop3tls import (HOST, Daemon, Pop3, b64, cert, client_context,  # noqa: F401 (fixture)
                     tls_settings)

MESSAGE = (b"From: a@example.com\r\nSubject: over TLS\r\n\r\nsecret body\r\n"
           b".a line with a leading dot\r\n" + b"T" * 1500 + b"\r\n")

USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
         "ivan", "judy", "mallory", "oscar", "peggy", "trent"]


@pytest.fixture(scope="module")
def srv(cert):
    """STLS on Port and POP3S on TLS_Port; every user has one message and
    the plaintext password "pw-<login>" (alice: a SHA512-CRYPT hash)."""
    users = [("alice", "pw-alice", "alice@example.com")]
    users += [("--plain", u, f"pw-{u}", f"{u}@example.com") for u in USERS[1:]]
    d = Daemon("tls", users, **tls_settings(cert))
    for u in USERS:
        d.t.store(f"{u}@example.com", MESSAGE)
    yield d.t
    d.finish()


def ctx(cert, **kw):
    return client_context(cert, **kw)


def quit_and_wait(c):
    """QUIT, then read until the server closes: by then the maildrop lock
    is released, so the next test may log in as the same user."""
    assert c.cmd("QUIT").startswith(b"+OK")
    c.rest()
    c.close()


def login_line(t, user):
    """The daemon's login log line for user (waits for it a little)."""
    for _ in range(50):
        m = re.findall(rf"login: user={user} from=\S+ method=(\S+) tls=(\w+)", t.read_log())
        if m:
            return m[-1]
        time.sleep(0.05)
    raise AssertionError(f"no login line for {user}:\n{t.read_log()}")


# -- Python ssl/poplib --

def test_poplib_stls_full_session(srv, cert):
    p = poplib.POP3(HOST, srv.port, timeout=10)
    try:
        caps = p.capa()
        assert "STLS" in caps and "USER" in caps, caps
        assert p.stls(context=ctx(cert)).startswith(b"+OK")
        assert p.sock.version() in ("TLSv1.2", "TLSv1.3")
        caps = p.capa()
        assert "STLS" not in caps, caps
        assert "USER" in caps and caps["SASL"] == ["PLAIN", "LOGIN"], caps
        p.user("alice")
        assert p.pass_("pw-alice").startswith(b"+OK")
        assert p.stat() == (1, len(MESSAGE))
        _, lines, octets = p.retr(1)
        assert b"".join(l + b"\r\n" for l in lines) == MESSAGE
        # STLS is refused inside TLS and after login
        with pytest.raises(poplib.error_proto, match="-ERR"):
            p._shortcmd("STLS")
        assert p.noop().startswith(b"+OK")
        # the +OK of QUIT arrives (through the STLS filter) before the close
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()
    assert login_line(srv, "alice") == ("USER", "yes")


def test_poplib_pop3s_full_session(srv, cert):
    p = poplib.POP3_SSL(HOST, srv.settings["TLS_Port"], timeout=10, context=ctx(cert))
    try:
        assert p.getwelcome().startswith(b"+OK tpops ready <")
        caps = p.capa()
        assert "STLS" not in caps and "USER" in caps, caps
        with pytest.raises(poplib.error_proto, match="-ERR"):
            p._shortcmd("STLS")  # already on TLS
        p.user("bob")
        assert p.pass_("pw-bob").startswith(b"+OK")
        _, lines, _ = p.retr(1)
        assert b"".join(l + b"\r\n" for l in lines) == MESSAGE
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()
    assert login_line(srv, "bob") == ("USER", "yes")


def test_pop3s_apop_uses_the_greeting_inside_tls(srv, cert):
    p = poplib.POP3_SSL(HOST, srv.settings["TLS_Port"], timeout=10, context=ctx(cert))
    try:
        assert p.apop("carol", "pw-carol").startswith(b"+OK")
        assert p.stat()[0] == 1
        assert p.quit().startswith(b"+OK")
    finally:
        p.close()


def test_quit_reply_survives_stls_every_time(srv, cert):
    """After STLS the daemon's output passes a TLS filter; the last reply
    before the close must still be written out (repeat: it is a race)."""
    for _ in range(15):
        with Pop3(srv.port) as c:
            c.starttls(ctx(cert))
            assert c.cmd("QUIT") == b"+OK tpops signing off"
            assert c.rest() == b""


# -- curl --

def curl(*args):
    return subprocess.run(["curl", "-s", "-S", "--max-time", "20", *args],
                          capture_output=True, timeout=30)


def test_curl_pop3s_retrieves(srv):
    url = f"pop3s://dave:pw-dave@127.0.0.1:{srv.settings['TLS_Port']}/1"
    r = curl("-k", url)
    assert r.returncode == 0, r.stderr
    assert r.stdout == MESSAGE
    assert login_line(srv, "dave")[1] == "yes"
    # without -k curl must reject the self-signed certificate: TLS is real
    r = curl(url)
    assert r.returncode == 60, r


def test_curl_ssl_reqd_uses_stls(srv):
    r = curl("-k", "--ssl-reqd", f"pop3://erin:pw-erin@127.0.0.1:{srv.port}/1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == MESSAGE
    assert login_line(srv, "erin")[1] == "yes"


# -- openssl s_client --

def test_openssl_s_client_starttls(srv, cert):
    r = subprocess.run(
        ["openssl", "s_client", "-starttls", "pop3", "-connect", f"127.0.0.1:{srv.port}",
         "-CAfile", cert[0], "-verify_return_error", "-servername", "tpops.test", "-quiet"],
        input=b"CAPA\r\nUSER frank\r\nPASS pw-frank\r\nSTAT\r\nQUIT\r\n",
        capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split(b"\r\n")
    assert lines[0] == b"+OK Capability list follows", r.stdout
    capa = lines[1:lines.index(b".")]
    assert b"STLS" not in capa and b"USER" in capa, capa
    rest = lines[lines.index(b".") + 1:]
    assert rest[0] == b"+OK Send PASS", rest
    assert rest[1].startswith(b"+OK"), rest
    assert rest[2] == b"+OK 1 %d" % len(MESSAGE), rest
    assert rest[3].startswith(b"+OK tpops signing off"), rest
    assert login_line(srv, "frank")[1] == "yes"


# -- STLS semantics --

def test_stls_injection_is_discarded(srv, cert):
    """STLS and CAPA in one plaintext write: the CAPA was sent in the clear
    and must not be answered inside TLS (nor outside)."""
    with Pop3(srv.port) as c:
        c.send(b"STLS\r\nCAPA\r\n")
        assert c.line() == b"+OK Begin TLS negotiation"
        # nothing else in the clear: the CAPA answer would be here
        c.sock.settimeout(0.5)
        with pytest.raises((socket.timeout, TimeoutError)):
            c.buf += c.sock.recv(100)
        assert c.buf == b""
        c.sock.settimeout(10)
        c.sock = ctx(cert).wrap_socket(c.sock, server_hostname="tpops.test")
        # nothing comes unasked inside TLS either
        c.sock.settimeout(0.7)
        with pytest.raises((socket.timeout, TimeoutError)):
            data = c.sock.recv(100)
            raise AssertionError(f"unasked data after the handshake: {data!r}")
        c.sock.settimeout(10)
        # the first answer is to what we send inside TLS
        assert c.cmd("QUIT") == b"+OK tpops signing off"
        assert c.rest() == b""


def test_stls_injection_of_login_is_discarded(srv, cert):
    """A man in the middle appends USER/PASS of his own after STLS: those
    are not executed after the handshake."""
    with Pop3(srv.port) as c:
        c.send(b"STLS\r\nUSER grace\r\nPASS pw-grace\r\n")
        assert c.line() == b"+OK Begin TLS negotiation"
        c.sock = ctx(cert).wrap_socket(c.sock, server_hostname="tpops.test")
        assert c.cmd("STAT").startswith(b"-ERR"), "the injected login was executed"
        assert c.cmd("PASS pw-grace").startswith(b"-ERR")
        quit_and_wait(c)


def test_user_before_stls_is_forgotten(srv, cert):
    """STLS resets what the client said in the clear: a USER sent before it
    (perhaps by someone else) does not carry over into TLS."""
    with Pop3(srv.port) as c:
        assert c.cmd("USER heidi").startswith(b"+OK")
        c.starttls(ctx(cert))
        reply = c.cmd("PASS pw-heidi")
        assert reply.startswith(b"-ERR"), reply
        assert c.login("heidi", "pw-heidi").startswith(b"+OK")
        quit_and_wait(c)


def test_capa_before_and_after_stls(srv, cert):
    with Pop3(srv.port) as c:
        before = c.capa()
        assert "STLS" in before and "USER" in before, before
        c.starttls(ctx(cert))
        after = c.capa()
        assert "STLS" not in after, after
        assert "USER" in after and "SASL PLAIN LOGIN" in after, after
        assert set(before) - set(after) == {"STLS"}


def same_capa_after_login(c, user, how="USER"):
    """CAPA after the login lists exactly what it listed before (RFC 2449
    section 5; none of tpops' capabilities differs between the states)."""
    before = c.capa()
    if how == "USER":
        assert c.login(user, f"pw-{user}").startswith(b"+OK")
    else:
        assert c.cmd("AUTH PLAIN " + b64(f"\0{user}\0pw-{user}")).startswith(b"+OK")
    after = c.capa()
    assert after == before, (before, after)
    assert c.cmd("STAT").startswith(b"+OK 1 ")
    quit_and_wait(c)
    return after


def test_capa_after_login_lists_what_authorization_did(srv, cert):
    # in the clear: SASL, USER and STLS before and after
    with Pop3(srv.port) as c:
        caps = same_capa_after_login(c, "judy")
        assert "SASL PLAIN LOGIN" in caps and "USER" in caps and "STLS" in caps, caps
    # after STLS (no STLS any more), logged in with SASL
    with Pop3(srv.port) as c:
        c.starttls(ctx(cert))
        caps = same_capa_after_login(c, "judy", how="SASL")
        assert "SASL PLAIN LOGIN" in caps and "STLS" not in caps, caps
    # POP3S
    with Pop3(srv.settings["TLS_Port"], tls=ctx(cert)) as c:
        caps = same_capa_after_login(c, "judy")
        assert "SASL PLAIN LOGIN" in caps and "STLS" not in caps, caps


def test_stls_refused_after_login_and_on_tls(srv, cert):
    with Pop3(srv.port) as c:
        assert c.login("ivan", "pw-ivan").startswith(b"+OK")
        assert c.cmd("STLS").startswith(b"-ERR")
        assert c.cmd("STAT").startswith(b"+OK 1 ")  # still in the clear, still working
        quit_and_wait(c)
    with Pop3(srv.port) as c:
        c.starttls(ctx(cert))
        assert c.cmd("STLS").startswith(b"-ERR")
        assert c.login("ivan", "pw-ivan").startswith(b"+OK")
        quit_and_wait(c)
    with Pop3(srv.settings["TLS_Port"], tls=ctx(cert)) as c:
        assert c.greeting.startswith(b"+OK")
        assert c.cmd("STLS").startswith(b"-ERR")
        assert c.cmd("NOOP").startswith(b"-ERR")  # AUTHORIZATION state, but alive
        assert "STLS" not in c.capa()


def test_tls_handshake_failure_on_stls_ends_the_session(srv, cert):
    """Garbage instead of a ClientHello after STLS: the connection ends and
    the daemon goes on serving."""
    with Pop3(srv.port) as c:
        assert c.cmd("STLS").startswith(b"+OK")
        c.send(b"CAPA\r\n" * 10)
        c.rest(timeout=10)
    with Pop3(srv.port) as c:
        assert c.cmd("CAPA").startswith(b"+OK")
    srv.assert_alive()


# -- protocol versions --

def tls11_context():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
        c.minimum_version = ssl.TLSVersion.TLSv1_1
        c.maximum_version = ssl.TLSVersion.TLSv1_1
        c.set_ciphers("DEFAULT:@SECLEVEL=0")
    return c


def test_tls11_client_works_against_a_tls11_server(cert):
    """The control for the test below: this client really can speak TLS
    1.1, so a failure against tpops is tpops refusing it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(*cert)
        server.minimum_version = ssl.TLSVersion.TLSv1_1
        server.set_ciphers("DEFAULT:@SECLEVEL=0")
    ls = socket.socket()
    ls.bind((HOST, 0))
    ls.listen()
    got = []

    def serve():
        conn, _ = ls.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as s:
                got.append(s.version())
        except ssl.SSLError as e:
            got.append(e)
    th = threading.Thread(target=serve)
    th.start()
    with tls11_context().wrap_socket(socket.create_connection(ls.getsockname(), timeout=10)) as s:
        assert s.version() == "TLSv1.1"
    th.join(10)
    ls.close()
    assert got == ["TLSv1.1"]


def test_tls11_refused_tls12_and_13_accepted(srv, cert):
    # POP3S
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        Pop3(srv.settings["TLS_Port"], tls=tls11_context())
    # STLS
    with Pop3(srv.port) as c:
        assert c.cmd("STLS").startswith(b"+OK")
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            tls11_context().wrap_socket(c.sock)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        v12 = ctx(cert, minimum_version=version, maximum_version=version)
        with Pop3(srv.settings["TLS_Port"], tls=v12) as c:
            assert c.sock.version() == version.name.replace("v1_", "v1.")
            assert c.greeting.startswith(b"+OK")
            assert c.cmd("QUIT").startswith(b"+OK")
        with Pop3(srv.port) as c:
            c.starttls(v12)
            assert c.sock.version() == version.name.replace("v1_", "v1.")
            assert c.cmd("QUIT").startswith(b"+OK")
    srv.assert_alive()


def test_no_certificate_no_stls(make_tpops):
    t = make_tpops()
    t.start()
    with Pop3(t.port) as c:
        assert "STLS" not in c.capa()
        assert c.cmd("STLS").startswith(b"-ERR")
        assert c.cmd("CAPA").startswith(b"+OK")  # the session goes on in the clear


def refused_start(t):
    """Runs the daemon, which must refuse to start; returns its output."""
    r = subprocess.run([program("tpops"), "-c", t.conf], capture_output=True, timeout=30,
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert r.returncode != 0, r
    return (r.stdout + r.stderr).decode(errors="replace")


def test_require_tls_needs_a_certificate(make_tpops):
    out = refused_start(make_tpops(RequireTLS="yes"))
    assert "RequireTLS" in out, out


def test_key_not_matching_certificate_is_refused(make_tpops, cert, tmp_path):
    other = str(tmp_path / "other.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", other],
                   check=True, capture_output=True)
    os.chmod(other, 0o600)
    out = refused_start(make_tpops(TLS_Cert=cert[0], TLS_Key=other))
    assert "TLS_Key" in out, out


# -- RequireTLS --

@pytest.fixture(scope="module")
def strict(cert):
    users = [("--plain", "bob", "pw", "bob@example.com"),
             ("alice", "secret", "alice@example.com")]
    d = Daemon("strict", users, **tls_settings(cert, RequireTLS="yes"))
    d.t.store("bob@example.com", MESSAGE)
    d.t.store("alice@example.com", MESSAGE)
    yield d.t
    d.finish()


def assert_tls_required(reply):
    assert re.match(rb"-ERR \[AUTH\] .*TLS required", reply), reply


def test_require_tls_refuses_plaintext_auth(strict, cert):
    with Pop3(strict.port) as c:
        capa = c.capa()
        assert "USER" not in capa, capa
        assert not [l for l in capa if l.startswith("SASL")], capa
        assert "STLS" in capa, capa
        assert_tls_required(c.cmd("USER bob"))
        assert_tls_required(c.cmd("PASS pw"))
        assert_tls_required(c.cmd("APOP bob 0123456789abcdef0123456789abcdef"))
        assert_tls_required(c.cmd("AUTH PLAIN " + b64("\0bob\0pw")))
        assert_tls_required(c.cmd("AUTH PLAIN"))
        assert_tls_required(c.cmd("AUTH"))
        # after STLS everything works
        c.starttls(client_context(cert))
        capa = c.capa()
        assert "USER" in capa and "SASL PLAIN LOGIN" in capa and "STLS" not in capa, capa
        assert c.login("bob", "pw").startswith(b"+OK")
        assert c.capa() == capa  # the same list in TRANSACTION
        assert c.cmd("STAT") == b"+OK 1 %d" % len(MESSAGE)
        quit_and_wait(c)
    with Pop3(strict.port) as c:
        c.starttls(client_context(cert))
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0secret")).startswith(b"+OK")
        quit_and_wait(c)
    p = poplib.POP3_SSL(HOST, strict.settings["TLS_Port"], timeout=10,
                        context=client_context(cert))
    assert "USER" in p.capa()
    assert p.apop("bob", "pw").startswith(b"+OK")
    assert p.quit().startswith(b"+OK")
    p.close()
    assert "auth failed" not in strict.read_log()  # refusals are not failed logins


def test_require_tls_with_real_clients(strict, cert):
    # curl in the clear cannot log in (nothing offered but APOP, refused)
    r = curl(f"pop3://bob:pw@127.0.0.1:{strict.port}/1")
    assert r.returncode != 0
    # with STLS it can
    r = curl("-k", "--ssl-reqd", f"pop3://alice:secret@127.0.0.1:{strict.port}/1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == MESSAGE


def other_address():
    """A non-loopback address of this host, or None."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout
    except OSError:
        return None
    for a in out.split():
        if "." in a and not a.startswith("127."):
            try:
                with socket.socket() as s:
                    s.bind((a, 0))
                return a
            except OSError:
                continue
    return None


def test_plaintext_from_loopback_allowed(make_tpops, cert):
    extra = other_address()
    settings = tls_settings(cert, RequireTLS="yes", AllowPlaintextFromLoopback="yes",
                            Listen="127.0.0.1 ::1")
    if extra:
        settings["Listen"] += f" {extra}"
    t = make_tpops(**settings)
    t.add_user("bob", "pw", None, "--plain")
    t.start()
    for host, source in (("127.0.0.1", None), ("127.0.0.1", "127.0.0.2"), ("::1", None)):
        with Pop3(t.port, host=host, source=source) as c:
            capa = c.capa()
            assert "USER" in capa and "SASL PLAIN LOGIN" in capa, capa
            assert "STLS" in capa
            assert c.login("bob", "pw").startswith(b"+OK")
            quit_and_wait(c)
    if not extra:
        pytest.skip("no non-loopback address to show the refusal on")
    # from an address that is not loopback, RequireTLS holds
    with Pop3(t.port, host=extra) as c:
        capa = c.capa()
        assert "USER" not in capa, capa
        assert_tls_required(c.cmd("USER bob"))
        assert_tls_required(c.cmd("AUTH PLAIN " + b64("\0bob\0pw")))
        c.starttls(client_context(cert))
        assert c.login("bob", "pw").startswith(b"+OK")
        quit_and_wait(c)


# -- password schemes, over TLS --

SCHEMES = ["SHA512-CRYPT", "BLF-CRYPT", "YESCRYPT", "ARGON2ID", "PLAIN", "SCRAM-SHA-256"]
PREFIX = {"SHA512-CRYPT": "{SHA512-CRYPT}$6$", "BLF-CRYPT": "{BLF-CRYPT}$2b$",
          "YESCRYPT": "{YESCRYPT}$y$", "ARGON2ID": "{ARGON2ID}$argon2id$",
          "PLAIN": "{PLAIN}", "SCRAM-SHA-256": "{SCRAM-SHA-256}4096,"}


@pytest.fixture(scope="module")
def schemes(cert):
    users = [("--scheme", s, f"u-{s.lower()}", f"Pw {s}!", f"{s.lower()}@example.com")
             for s in SCHEMES]
    d = Daemon("schemes", users, **tls_settings(cert))
    for s in SCHEMES:
        d.t.store(f"{s.lower()}@example.com", MESSAGE)
    yield d.t
    d.finish()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_poplib_over_tls_with_each_scheme(schemes, cert, scheme):
    login = f"u-{scheme.lower()}"
    stored = schemes.sql('SELECT passwd FROM "user" WHERE login = ?', (login,))[0][0]
    assert stored.startswith(PREFIX[scheme]), stored
    p = poplib.POP3_SSL(HOST, schemes.settings["TLS_Port"], timeout=20, context=client_context(cert))
    p.user(login)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.pass_(f"Pw {scheme}?")
    p.user(login)
    assert p.pass_(f"Pw {scheme}!").startswith(b"+OK")
    assert p.stat() == (1, len(MESSAGE))
    assert p.quit().startswith(b"+OK")
    p.close()
    # and with STLS on the plain port (once the first session let go of
    # the maildrop lock)
    deadline = time.time() + 10
    while True:
        p = poplib.POP3(HOST, schemes.port, timeout=20)
        p.stls(context=client_context(cert))
        p.user(login)
        try:
            assert p.pass_(f"Pw {scheme}!").startswith(b"+OK")
            break
        except poplib.error_proto as e:
            assert b"[IN-USE]" in e.args[0] and time.time() < deadline, e
            p.close()
            time.sleep(0.05)
    assert p.quit().startswith(b"+OK")
    p.close()


# -- Maildir over TLS: pieces read on a storage worker --

def test_maildir_retr_over_stls_and_pop3s(make_tpops, cert):
    """Over TLS, Maildir pieces are read and converted on a storage worker
    (the I/O thread encrypts), also those already in memory, which plain
    sessions read on the I/O thread: the same octets, over STLS and
    POP3S."""
    t = make_tpops(backend="maildir", **tls_settings(cert))
    t.add_user("alice", "pw", None, "--plain")
    body = b"".join(b".line %06d of a message of several pieces\n" % i for i in range(40000))
    msgs = [b"Subject: big\n\n" + body, b"Subject: small\r\n\r\n.\r\n..\r\nend"]
    for m in msgs:
        t.store("alice@example.com", m)
    t.start()
    expect = [m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for m in msgs]
    expect[1] += b"\r\n"
    for implicit in (False, True):
        if implicit:
            c = Pop3(t.settings["TLS_Port"], tls=client_context(cert))
        else:
            c = Pop3(t.port)
            c.starttls(client_context(cert))
        assert c.login("alice", "pw").startswith(b"+OK")
        for i, m in enumerate(expect, 1):
            assert c.cmd(f"RETR {i}") == b"+OK %d octets" % len(m)
            assert b"".join(l + b"\r\n" for l in c.multiline()) == m
        assert c.cmd("QUIT").startswith(b"+OK")
        c.sock.close()


# -- flow control through the STLS filter --

def test_retr_over_stls_keeps_memory_bounded(make_tpops, cert):
    """A client that stops reading in the middle of a big RETR: over STLS
    the daemon must not encrypt the whole message into memory (the TLS
    layer must pass on the RETR flow control, as the plain path does)."""
    t = make_tpops(**tls_settings(cert))
    big = b"Subject: big\n\n" + (b"z" * 998 + b"\n") * 30000  # 30 MB
    for u in ("warm", "slow"):
        t.add_user(u, "pw", None, "--plain")
        t.store(f"{u}@example.com", big)
    t.start()

    def stalled_retr(user, tls):
        c = Pop3(t.port)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if tls:
            c.starttls(client_context(cert))
        assert c.login(user, "pw").startswith(b"+OK")
        before = t.rss_kib()
        c.send("RETR 1\r\n")
        c.sock.recv(100)  # the answer has begun
        time.sleep(1.5)
        grown = t.rss_kib() - before
        c.close()
        return grown

    stalled_retr("warm", False)  # caches, arenas: what every first RETR costs
    grown = stalled_retr("slow", True)
    assert grown < 12 * 1024, f"the daemon grew by {grown} KiB for a stalled 30 MB RETR"
