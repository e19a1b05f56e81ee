"""SASL AUTH (RFC 5034) with every mechanism, a right and a wrong
password: PLAIN (with and without initial response), LOGIN, CRAM-MD5 and
SCRAM-SHA-256 (the client side written here after RFC 5802, against a
plaintext-stored and a SCRAM-stored password); cancelling, bad base64,
unknown mechanisms, the CAPA SASL line; curl's SASL; the log line of
every failed login."""
import base64
import hashlib
import hmac
import os
import re
import subprocess
import time

import pytest

from pop3tls import Daemon, Pop3, b64, cert, client_context, sasl_line, tls_settings  # noqa: F401

ALL = "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256"
MESSAGE = b"Subject: sasl\r\n\r\nauthenticated\r\n"
AUTH_FAILED = b"-ERR [AUTH] Authentication failed"


@pytest.fixture(scope="module")
def srv(cert):
    """Every mechanism on; alice: SHA512-CRYPT "secret"; bob: plaintext
    "pw"; carol: a stored SCRAM-SHA-256 secret of "c-pw"."""
    users = [("alice", "secret", "alice@example.com"),
             ("--plain", "bob", "pw", "bob@example.com"),
             ("--scheme", "SCRAM-SHA-256", "carol", "c-pw", "carol@example.com")]
    d = Daemon("sasl", users, **tls_settings(cert, AuthMechanisms=ALL,
                                              AuthSecret="a secret for the SCRAM salts"))
    for u in ("alice", "bob", "carol"):
        d.t.store(f"{u}@example.com", MESSAGE)
    yield d.t
    d.finish()


def logged_in(c, reply):
    """A successful AUTH: the maildrop is there; QUIT and wait for the
    close (the lock is free again for the next test)."""
    assert reply.startswith(b"+OK"), reply
    assert c.cmd("STAT") == b"+OK 1 %d" % len(MESSAGE)
    assert c.cmd("QUIT").startswith(b"+OK")
    c.rest()


def failure_logged(t, user, method, reason=None):
    pattern = (rf"auth failed: user={re.escape(user)} from=127\.0\.0\.1 "
               rf"method={re.escape(method)} reason=(.*)")
    for _ in range(100):
        found = re.findall(pattern, t.read_log())
        if found:
            if reason is not None:
                assert any(reason in r for r in found), found
            return found
        time.sleep(0.05)
    raise AssertionError(f"no failure logged for {user} {method}:\n{t.read_log()}")


def still_usable(c, user="bob", password="pw"):
    """After an exchange that failed, the session goes on: a correct AUTH
    PLAIN logs in."""
    logged_in(c, c.cmd("AUTH PLAIN " + b64(f"\0{user}\0{password}")))


# -- CAPA and the mechanism list --

def capa_sasl(capa):
    return [l for l in capa if l.split()[0] == "SASL"]


def test_capa_lists_exactly_the_configured_mechanisms(srv):
    with Pop3(srv.port) as c:
        assert capa_sasl(c.capa()) == ["SASL " + ALL]
        assert c.cmd("AUTH") == b"+OK Supported mechanisms follow"
        assert c.multiline() == ALL.encode().split()


@pytest.mark.parametrize("setting,offered", [
    (None, "PLAIN LOGIN"),  # the default
    ("scram-sha-256 plain", "SCRAM-SHA-256 PLAIN"),
    ("CRAM-MD5", "CRAM-MD5"),
    ("none", None),
])
def test_capa_follows_auth_mechanisms(make_tpops, setting, offered):
    t = make_tpops(**({"AuthMechanisms": setting} if setting else {}))
    t.add_user("bob", "pw", None, "--plain")
    t.start()
    with Pop3(t.port) as c:
        sasl = capa_sasl(c.capa())
        assert sasl == ([f"SASL {offered}"] if offered else []), sasl
        for mech in ALL.split():
            reply = c.cmd(f"AUTH {mech}")
            if offered and mech in offered.split():
                assert reply.startswith(b"+ "), (mech, reply)
                assert c.cmd("*").startswith(b"-ERR")
            else:
                assert reply.startswith(b"-ERR"), (mech, reply)
        assert c.cmd("AUTH FOO").startswith(b"-ERR")


def test_unknown_mechanism(srv):
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH X-UNKNOWN").startswith(b"-ERR")
        assert c.cmd("AUTH GSSAPI " + b64("x")).startswith(b"-ERR")
        assert c.cmd("AUTH DIGEST-MD5").startswith(b"-ERR")
        still_usable(c)


def test_mechanism_names_are_case_insensitive(srv):
    with Pop3(srv.port) as c:
        logged_in(c, c.cmd("AUTH plain " + b64("\0bob\0pw")))


# -- PLAIN --

def test_plain_with_initial_response(srv):
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0wrong")) == AUTH_FAILED
        logged_in(c, c.cmd("AUTH PLAIN " + b64("\0alice\0secret")))
    failure_logged(srv, "alice", "PLAIN", "wrong password")


def test_plain_without_initial_response(srv):
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH PLAIN") == b"+ "  # the empty challenge
        assert c.cmd(b64("\0bob\0nope")) == AUTH_FAILED
        assert c.cmd("AUTH PLAIN") == b"+ "
        logged_in(c, c.cmd(b64("\0bob\0pw")))


def test_plain_authzid(srv):
    with Pop3(srv.port) as c:
        # authzid equal to the user: fine
        logged_in(c, c.cmd("AUTH PLAIN " + b64("bob\0bob\0pw")))
    with Pop3(srv.port) as c:
        # acting as somebody else: refused even with the right password
        assert c.cmd("AUTH PLAIN " + b64("alice\0bob\0pw")).startswith(b"-ERR")
        assert c.cmd("STAT").startswith(b"-ERR")
        still_usable(c)


def test_plain_unknown_user_looks_like_a_wrong_password(srv):
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH PLAIN " + b64("\0nobody-here\0pw")) == AUTH_FAILED
    failure_logged(srv, "nobody-here", "PLAIN", "unknown user")


def test_plain_long_response(srv):
    """SASL responses may be longer than a command line (RFC 5034 4)."""
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd(b64("\0bob\0" + "x" * 900)) == AUTH_FAILED
        still_usable(c)


def test_pipelined_response(srv):
    """A client that sends its response with the AUTH (no need to wait
    for the empty challenge) and a command behind it."""
    with Pop3(srv.port) as c:
        c.send("AUTH PLAIN\r\n" + b64("\0bob\0pw") + "\r\nSTAT\r\n")
        assert c.line() == b"+ "
        assert c.line().startswith(b"+OK")
        assert c.line() == b"+OK 1 %d" % len(MESSAGE)
        assert c.cmd("QUIT").startswith(b"+OK")
        c.rest()


def test_overlong_response_ends_the_exchange(srv):
    """A response over the SASL line limit is refused with -ERR, which ends
    the AUTH exchange for the client (RFC 5034): the next line is a
    command again, not taken for a response."""
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd("A" * 5000).startswith(b"-ERR")
        assert c.cmd("CAPA").startswith(b"+OK Capability list follows")
        c.multiline()
        still_usable(c)


def test_plain_malformed_messages(srv):
    with Pop3(srv.port) as c:
        for bad in ("bob\0pw", "\0\0pw", "\0bob\0", "=", "\0bob\0pw\0extra"):
            reply = c.cmd("AUTH PLAIN " + (bad if bad == "=" else b64(bad)))
            # a broken message is no password guess: -ERR, but not [AUTH]
            assert reply.startswith(b"-ERR ") and b"[AUTH]" not in reply, (bad, reply)
            assert c.cmd("STAT").startswith(b"-ERR")  # not logged in
        still_usable(c)


# -- LOGIN --

def test_login(srv):
    with Pop3(srv.port) as c:
        assert sasl_line(c.cmd("AUTH LOGIN")) == b"Username:"
        assert sasl_line(c.cmd(b64("alice"))) == b"Password:"
        assert c.cmd(b64("not-secret")) == AUTH_FAILED
        assert sasl_line(c.cmd("AUTH LOGIN")) == b"Username:"
        assert sasl_line(c.cmd(b64("alice"))) == b"Password:"
        logged_in(c, c.cmd(b64("secret")))
    failure_logged(srv, "alice", "LOGIN", "wrong password")


def test_login_with_initial_response(srv):
    with Pop3(srv.port) as c:
        assert sasl_line(c.cmd("AUTH LOGIN " + b64("bob"))) == b"Password:"
        logged_in(c, c.cmd(b64("pw")))


# -- CRAM-MD5 --

def cram(c, user, password):
    challenge = sasl_line(c.cmd("AUTH CRAM-MD5"))
    assert re.fullmatch(rb"<[^<>@]+@tpops\.test>", challenge), challenge
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    return challenge, c.cmd(b64(f"{user} {digest}"))


def test_cram_md5(srv):
    with Pop3(srv.port) as c:
        first, reply = cram(c, "bob", "wrong")
        assert reply == AUTH_FAILED
        second, reply = cram(c, "bob", "pw")
        assert first != second  # a fresh challenge every time
        logged_in(c, reply)
    failure_logged(srv, "bob", "CRAM-MD5", "wrong password")


def test_cram_md5_needs_a_plaintext_password(srv):
    """alice's password is hashed: even the right one cannot be checked."""
    with Pop3(srv.port) as c:
        _, reply = cram(c, "alice", "secret")
        assert reply == AUTH_FAILED
        _, reply = cram(c, "nobody-here", "secret")
        assert reply == AUTH_FAILED
    failure_logged(srv, "alice", "CRAM-MD5", "plaintext")
    failure_logged(srv, "nobody-here", "CRAM-MD5", "unknown user")


def test_cram_md5_refuses_an_initial_response(srv):
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH CRAM-MD5 " + b64("bob 0123")).startswith(b"-ERR")
        still_usable(c)


# -- SCRAM-SHA-256 (RFC 5802, RFC 7677) --

def H(data):
    return hashlib.sha256(data).digest()


def HMAC(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def saslname(user):
    return user.replace("=", "=3D").replace(",", "=2C")


class Scram:
    """The client side of one SCRAM-SHA-256 exchange."""

    def __init__(self, user, password):
        self.password = password.encode()
        self.cnonce = base64.b64encode(os.urandom(18)).decode()
        self.gs2 = "n,,"
        self.first_bare = f"n={saslname(user)},r={self.cnonce}"

    def first(self):
        return self.gs2 + self.first_bare

    def final(self, server_first):
        self.server_first = server_first.decode()
        attrs = dict(a.split("=", 1) for a in self.server_first.split(","))
        assert attrs["r"].startswith(self.cnonce) and len(attrs["r"]) > len(self.cnonce)
        self.salt = base64.b64decode(attrs["s"])
        self.iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, self.salt, self.iterations)
        client_key = HMAC(salted, b"Client Key")
        without_proof = f"c={b64(self.gs2)},r={attrs['r']}"
        auth_message = f"{self.first_bare},{self.server_first},{without_proof}".encode()
        signature = HMAC(H(client_key), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_signature = HMAC(HMAC(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={b64(proof)}"

    def check_server_final(self, data):
        assert data == b"v=" + base64.b64encode(self.server_signature), data


def scram(c, user, password, initial_response=False):
    """Runs the exchange up to the server's answer to the client-final
    message; returns (client, that answer)."""
    s = Scram(user, password)
    if initial_response:
        reply = c.cmd("AUTH SCRAM-SHA-256 " + b64(s.first()))
    else:
        assert c.cmd("AUTH SCRAM-SHA-256") == b"+ "
        reply = c.cmd(b64(s.first()))
    return s, c.cmd(b64(s.final(sasl_line(reply))))


def scram_ok(c, user, password, **kw):
    s, reply = scram(c, user, password, **kw)
    s.check_server_final(sasl_line(reply))  # the server knows the key too
    logged_in(c, c.cmd(""))
    return s


@pytest.mark.parametrize("user,password", [("bob", "pw"), ("carol", "c-pw")])
def test_scram_sha_256(srv, user, password):
    with Pop3(srv.port) as c:
        s, reply = scram(c, user, password + "x")
        assert reply == AUTH_FAILED
        scram_ok(c, user, password)
    with Pop3(srv.port) as c:
        scram_ok(c, user, password, initial_response=True)
    failure_logged(srv, user, "SCRAM-SHA-256", "wrong password")


def test_scram_stored_secret_is_used(srv):
    """carol's exchange uses the salt and iteration count of her stored
    secret: the server did not need her password."""
    stored = srv.sql('SELECT passwd FROM "user" WHERE login = ?', ("carol",))[0][0]
    iterations, salt = stored[len("{SCRAM-SHA-256}"):].split(",")[:2]
    with Pop3(srv.port) as c:
        s = scram_ok(c, "carol", "c-pw")
    assert s.iterations == int(iterations)
    assert s.salt == base64.b64decode(salt)


def test_scram_unknown_user_looks_like_a_known_one(srv):
    """An unknown login gets a salt and an iteration count like a real
    plaintext user's, the same on every try, and fails at the same step."""
    salts = []
    for user in ("bob", "bob", "nobody-here", "nobody-here"):
        with Pop3(srv.port) as c:
            s, reply = scram(c, user, "guess")
            assert reply == AUTH_FAILED
            salts.append((s.salt, s.iterations))
    assert salts[0] == salts[1] and salts[2] == salts[3]
    assert salts[0] != salts[2]
    assert salts[0][1] == salts[2][1] == 4096
    assert len(salts[0][0]) == len(salts[2][0])
    failure_logged(srv, "nobody-here", "SCRAM-SHA-256", "unknown user")


def test_scram_with_a_hashed_password_fails(srv):
    with Pop3(srv.port) as c:
        _, reply = scram(c, "alice", "secret")
        assert reply == AUTH_FAILED
    failure_logged(srv, "alice", "SCRAM-SHA-256", "SCRAM needs")


def test_scram_protocol_errors(srv):
    with Pop3(srv.port) as c:
        # channel binding asked for: not offered
        assert c.cmd("AUTH SCRAM-SHA-256 " + b64("p=tls-unique,,n=bob,r=abc")).startswith(b"-ERR")
        # the final message with a nonce that is not the server's
        s = Scram("bob", "pw")
        server_first = sasl_line(c.cmd("AUTH SCRAM-SHA-256 " + b64(s.first())))
        final = s.final(server_first).replace(",r=", ",r=X", 1)
        assert c.cmd(b64(final)).startswith(b"-ERR")
        # data after the server-final message
        s, reply = scram(c, "bob", "pw")
        s.check_server_final(sasl_line(reply))
        assert c.cmd(b64("junk")).startswith(b"-ERR")
        assert c.cmd("STAT").startswith(b"-ERR")
        still_usable(c)


# -- cancelling and broken exchanges --

def test_star_cancels(srv):
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd("*").startswith(b"-ERR")
        assert sasl_line(c.cmd("AUTH LOGIN")) == b"Username:"
        assert sasl_line(c.cmd(b64("bob"))) == b"Password:"
        assert c.cmd("*").startswith(b"-ERR")
        sasl_line(c.cmd("AUTH CRAM-MD5"))
        assert c.cmd("*").startswith(b"-ERR")
        s = Scram("bob", "pw")
        sasl_line(c.cmd("AUTH SCRAM-SHA-256 " + b64(s.first())))
        assert c.cmd("*").startswith(b"-ERR")
        # "*" is a command again, not a response, once nothing is pending
        assert c.cmd("*").startswith(b"-ERR")
        assert c.cmd("STAT").startswith(b"-ERR")
        still_usable(c)


def test_bad_base64(srv):
    with Pop3(srv.port) as c:
        assert c.cmd("AUTH PLAIN") == b"+ "
        assert c.cmd("not base64!").startswith(b"-ERR")
        assert c.cmd("AUTH PLAIN %%%%").startswith(b"-ERR")
        assert sasl_line(c.cmd("AUTH LOGIN")) == b"Username:"
        assert c.cmd("Ym9i=====").startswith(b"-ERR")
        assert c.cmd("CAPA").startswith(b"+OK")  # a command again
        c.multiline()
        still_usable(c)


# -- over TLS --

def test_sasl_after_stls(srv, cert):
    with Pop3(srv.port) as c:
        c.starttls(client_context(cert))
        assert capa_sasl(c.capa()) == ["SASL " + ALL]
        scram_ok(c, "carol", "c-pw")
    with Pop3(srv.settings["TLS_Port"], tls=client_context(cert)) as c:
        logged_in(c, c.cmd("AUTH PLAIN " + b64("\0alice\0secret")))


# -- failed logins in the log --

def test_every_failed_login_is_logged(srv):
    with Pop3(srv.port) as c:
        assert c.login("bob", "bad-user-pass") == AUTH_FAILED
        assert c.cmd("APOP bob 0123456789abcdef0123456789abcdef") == AUTH_FAILED
        assert c.cmd("AUTH PLAIN " + b64("\0log-user\0bad")) == AUTH_FAILED
    failure_logged(srv, "bob", "USER", "wrong password")
    failure_logged(srv, "bob", "APOP")
    failure_logged(srv, "log-user", "PLAIN", "unknown user")
    # the password never reaches the log
    assert "bad-user-pass" not in srv.read_log()


# -- curl --

def curl(*args):
    return subprocess.run(["curl", "-s", "-S", "--max-time", "20", *args],
                          capture_output=True, timeout=30)


def last_method(t, user):
    for _ in range(100):  # 5 s, as failure_logged: a loaded machine logs late
        m = re.findall(rf"login: user={user} from=\S+ method=(\S+)", t.read_log())
        if m:
            return m[-1]
        time.sleep(0.05)
    raise AssertionError(t.read_log())


@pytest.fixture
def plain_mechs(make_tpops):
    """The default AuthMechanisms (PLAIN LOGIN)."""
    t = make_tpops()
    t.add_user("alice", "secret")
    t.add_user("bob", "pw", None, "--plain")
    t.store("alice@example.com", MESSAGE)
    t.store("bob@example.com", MESSAGE)
    return t.start()


@pytest.mark.parametrize("options,method", [
    ((), "PLAIN"),
    (("--sasl-ir",), "PLAIN"),
    (("--login-options", "AUTH=LOGIN"), "LOGIN"),
])
def test_curl_sasl(plain_mechs, options, method):
    t = plain_mechs
    r = curl(*options, f"pop3://alice:secret@127.0.0.1:{t.port}/1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == MESSAGE
    assert last_method(t, "alice") == method
    r = curl(*options, f"pop3://alice:wrong@127.0.0.1:{t.port}/1")
    assert r.returncode == 67, r  # CURLE_LOGIN_DENIED
    failure_logged(t, "alice", method, "wrong password")


def test_curl_cram_md5_and_pop3s(srv):
    r = curl(f"pop3://bob:pw@127.0.0.1:{srv.port}/1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == MESSAGE
    # curl prefers CRAM-MD5 to PLAIN when offered
    assert last_method(srv, "bob") == "CRAM-MD5"
    r = curl("-k", "--login-options", "AUTH=PLAIN",
             f"pop3s://alice:secret@127.0.0.1:{srv.settings['TLS_Port']}/1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == MESSAGE
    assert last_method(srv, "alice") == "PLAIN"


# -- unknown users cost what known ones cost --

def median_ms(samples):
    samples = sorted(samples)
    return samples[len(samples) // 2] * 1000


def pass_times(t, users, n=25):
    """Median ms from PASS wrong to its -ERR, for each user, the users'
    tries interleaved (one connection each), so that a load that comes and
    goes on the machine weighs on all of them alike."""
    out = {u: [] for u in users}
    conns = [Pop3(t.port) for _ in users]
    try:
        for _ in range(n):
            for user, c in zip(users, conns):
                assert c.cmd(f"USER {user}").startswith(b"+OK")
                start = time.perf_counter()
                assert c.cmd("PASS wrong") == AUTH_FAILED
                out[user].append(time.perf_counter() - start)
    finally:
        for c in conns:
            c.close()
    return [median_ms(out[u]) for u in users]


def scram_first_times(t, users, n=25):
    """Median ms of the server-first message of SCRAM for each user,
    interleaved as in pass_times."""
    out = {u: [] for u in users}
    conns = [Pop3(t.port) for _ in users]
    try:
        for _ in range(n):
            for user, c in zip(users, conns):
                assert c.cmd("AUTH SCRAM-SHA-256") == b"+ "
                start = time.perf_counter()
                sasl_line(c.cmd(b64(f"n,,n={user},r=0123456789abcdef")))
                out[user].append(time.perf_counter() - start)
                assert c.cmd("*").startswith(b"-ERR")
    finally:
        for c in conns:
            c.close()
    return [median_ms(out[u]) for u in users]


def test_timing_does_not_tell_which_logins_exist(srv):
    """A wrong password for a plaintext-stored user (bob) must not be
    answered much faster than one for an unknown user (which costs the
    dummy hash); nor a SCRAM exchange for a stored SCRAM secret (carol)
    than one for an unknown user (which costs a PBKDF2). Medians of many
    tries, taken in turns; the margins are wide (without the padding the
    ratio is ~0.05)."""
    unknown, bob = pass_times(srv, ["nobody-here", "bob"])
    assert bob > 0.3 * unknown, (bob, unknown)
    unknown, carol = scram_first_times(srv, ["nobody-here", "carol"])
    assert carol > 0.3 * unknown, (carol, unknown)
