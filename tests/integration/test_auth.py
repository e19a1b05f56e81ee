"""Authentication against abuse (docs/SECURITY.md): logs a client cannot
forge (checked with the real fail2ban-regex), the brute-force records held
before the check (many addresses against one login, many logins from one
network, case variants of a login), the owner spared from a known network,
and APOP offered only when configured (real s-nail and neomutt)."""
import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import DAEMON_ASAN, program
from pop3tls import Pop3, b64, sasl_line

# The filter of docs/SECURITY.md, read from there so that the documented
# one is the one tested.
SECURITY_MD = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "SECURITY.md")


def documented_filter():
    text = open(SECURITY_MD).read()
    m = re.search(r"```\n(\[Definition\]\nfailregex = [^\n]+\n)```", text)
    assert m, "no fail2ban filter in docs/SECURITY.md"
    return m.group(1)


# -- logs that cannot be forged --

FORGED = "203.0.113."


def scram_failure(c, user):
    """A SCRAM-SHA-256 exchange for user (escaped as RFC 5802 says) with
    a wrong proof; returns the final reply."""
    saslname = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={saslname},r=clientnonce0123456789"
    reply = c.cmd("AUTH SCRAM-SHA-256 " + b64("n,," + first_bare))
    if reply.startswith(b"-ERR"):
        return reply
    server_first = sasl_line(reply).decode()
    nonce = dict(kv.split("=", 1) for kv in server_first.split(","))["r"]
    proof = base64.b64encode(b"\0" * 32).decode()
    return c.cmd(b64(f"c=biws,r={nonce},p={proof}"))


@pytest.mark.skipif(shutil.which("fail2ban-regex") is None, reason="needs fail2ban")
def test_fail2ban_filter_matches_only_the_real_peer(make_tpops, tmp_path):
    t = make_tpops(AuthMechanisms="PLAIN LOGIN SCRAM-SHA-256", LogLevel="debug",
                   AuthSecret="a secret for the SCRAM salts")
    t.add_user("bob", "pw", None, "--plain")
    t.start()
    hostile = [f"x from={FORGED}{i} method=USER reason=y" for i in range(1, 4)]
    hostile.append(f"z\nauth failed: user=z from={FORGED}9 method=USER reason=r")
    hostile.append(f"\x1b[1A\rtpops[1]: auth failed: user=a from={FORGED}8 method=X")
    failures = 0

    def counted(reply):
        """A failed login is counted; a refusal as malformed (names with
        control characters are not valid SASL names) is not."""
        nonlocal failures
        assert reply.startswith(b"-ERR"), reply
        if reply.startswith(b"-ERR [AUTH]"):
            failures += 1

    with Pop3(t.port, source="127.0.0.1") as c:
        # USER takes one word: the hostile part has no space
        for word in [f"from={FORGED}1", f"a\tfrom={FORGED}2", f"\"from={FORGED}3\"",
                     f"\x1b[1A\x08from={FORGED}3"]:
            if c.cmd(f"USER {word}").startswith(b"+OK"):
                counted(c.cmd("PASS wrong"))
        for name in hostile:
            counted(c.cmd("AUTH PLAIN " + b64(f"\0{name}\0wrong")))
            assert c.cmd("AUTH LOGIN").startswith(b"+ ")
            reply = c.cmd(b64(name))
            counted(c.cmd(b64("wrong")) if reply.startswith(b"+ ") else reply)
            counted(scram_failure(c, name))
        for word in [f"from={FORGED}4", f"bob\x0bfrom={FORGED}5"]:
            counted(c.cmd(f"APOP {word} 0123456789abcdef0123456789abcdef"))
    assert failures >= 12, failures
    log = t.read_log()
    assert log.count("auth failed: ") == failures, log
    # the escaped form is what is logged
    assert f"user=x\\x20from={FORGED}1\\x20method=USER" in log
    assert f" from={FORGED}" not in log, log  # not even in the debug trace
    assert f"<- USER\\x20\\x22from={FORGED}3\\x22" in log, log
    filter_path = tmp_path / "tpops.conf"
    filter_path.write_text(documented_filter())
    r = subprocess.run(["fail2ban-regex", "-o", "ip", t.log_path, str(filter_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    found = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    assert len(found) == failures, r.stdout
    assert set(found) == {"127.0.0.1"}, r.stdout


# -- distributed guessing --

def guess(port, source, login, password, give_up=0.3):
    """One guess as a botnet makes it: hangs up when no answer comes
    within give_up seconds (it takes silence for "wrong")."""
    try:
        with Pop3(port, source=source, timeout=5) as c:
            assert c.cmd(f"USER {login}").startswith(b"+OK")
            c.sock.settimeout(give_up)
            try:
                return c.cmd(f"PASS {password}")
            except (socket.timeout, TimeoutError):
                return None
    except OSError:
        return None


def timed_login(port, source, user, password, via_proxy=None):
    with Pop3(port, source=source, greeting=via_proxy is None) as c:
        if via_proxy is not None:
            c.send(via_proxy)
            assert c.line().startswith(b"+OK")
        start = time.monotonic()
        reply = c.login(user, password)
        took = time.monotonic() - start
        assert reply.startswith(b"+OK"), reply
        assert c.cmd("QUIT").startswith(b"+OK")
        return took


def run_attack(seconds, attackers):
    """Runs each attacker (a function of its index) in a loop for the given
    seconds, in parallel; returns when all are done."""
    end = time.monotonic() + seconds

    def loop(i):
        while time.monotonic() < end:
            attackers(i)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    return threads


def checks_allowed(elapsed, delay_max):
    """At most: the grace (3), then one check per AuthFailureDelayMax, and
    one slot of slack at each end."""
    return 3 + int(elapsed / delay_max) + 2


def test_many_addresses_against_one_login(make_tpops):
    """20 guessers from 20 addresses, each hanging up after 0.3 s, against
    alice: her checks run at most once per AuthFailureDelayMax (measured
    from the log), while alice, from an address she logged in from
    before, still logs in at once."""
    t = make_tpops(AuthFailureDelay=1, AuthFailureDelayMax=2)
    t.add_user("alice", "secret")
    t.start()
    assert timed_login(t.port, "127.0.0.2", "alice", "secret") < 1
    attack_start = time.monotonic()
    threads = run_attack(8, lambda i: guess(t.port, f"127.0.1.{i + 1}", "alice", f"guess{i}"))
    time.sleep(4)  # the attack is on
    assert timed_login(t.port, "127.0.0.2", "alice", "secret") < 1
    for th in threads:
        th.join(30)
    elapsed = time.monotonic() - attack_start
    checks = len(re.findall(r"auth failed: user=alice from=127\.0\.1\.", t.read_log()))
    print(f"{checks} checks of alice in {elapsed:.1f} s from 20 addresses")
    assert 3 <= checks <= checks_allowed(elapsed, 2), checks
    # case variants are the same login (and so held the same)
    assert guess(t.port, "127.0.2.1", "ALICE", "guess", give_up=0.5) is None


def start_proxied(t):
    """Starts the daemon; ready when its log says it serves (a PROXY
    listener greets nobody without a header)."""
    t.log = open(t.log_path, "ab")
    env = dict(os.environ, ASAN_OPTIONS=DAEMON_ASAN,
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    t.proc = subprocess.Popen([program("tpops"), "-c", t.conf], stdout=t.log,
                              stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 20
    while "serving POP3 on port" not in t.read_log():
        assert t.proc.poll() is None and time.time() < deadline, t.read_log()
        time.sleep(0.05)
    return t


def proxy_v1(source, port):
    return f"PROXY TCP6 {source} 2001:db8::1 {port} 110\r\n".encode()


def test_many_logins_from_one_network(make_tpops):
    """Guessing many logins from many addresses of one IPv6 /64 (claimed
    in PROXY headers: loopback has no /64 to bind to) and from one IPv4
    address: at most one check per AuthFailureDelayMax for the network;
    another /64 and a known pair in that /64 are not held."""
    t = make_tpops(AuthFailureDelay=1, AuthFailureDelayMax=2, ProxyProtocol="yes")
    t.add_user("carol", "c-pw", None, "--plain")
    t.add_user("dave", "d-pw", None, "--plain")
    start_proxied(t)
    # carol logs in from the /64 before: her pair is known
    assert timed_login(t.port, "127.0.0.1", "carol", "c-pw",
                       proxy_v1("2001:db8:5:6::77", 40000)) < 1

    def attacker(i):
        try:
            with Pop3(t.port, source="127.0.0.1", greeting=False, timeout=5) as c:
                c.send(proxy_v1(f"2001:db8:5:6:{i:x}::{time.monotonic_ns() % 65536:x}", 1000 + i))
                c.line()
                c.cmd(f"USER user{i}-{time.monotonic_ns() % 1000}")
                c.sock.settimeout(0.3)
                c.cmd("PASS guess")
        except (OSError, EOFError):
            pass

    attack_start = time.monotonic()
    threads = run_attack(8, attacker)
    time.sleep(4)
    # the owner in that /64 is not held; another /64 is not either
    assert timed_login(t.port, "127.0.0.1", "carol", "c-pw",
                       proxy_v1("2001:db8:5:6::1234", 40001)) < 1
    assert timed_login(t.port, "127.0.0.1", "dave", "d-pw",
                       proxy_v1("2001:db8:5:7::1", 40002)) < 1
    for th in threads:
        th.join(30)
    elapsed = time.monotonic() - attack_start
    checks = len(re.findall(r"auth failed: user=user\S+ from=2001:db8:5:6:", t.read_log()))
    print(f"{checks} checks from one /64 in {elapsed:.1f} s")
    assert 3 <= checks <= checks_allowed(elapsed, 2), checks


def test_many_logins_from_one_ipv4_address(make_tpops):
    t = make_tpops(AuthFailureDelay=1, AuthFailureDelayMax=2)
    t.start()
    attack_start = time.monotonic()
    threads = run_attack(6, lambda i: guess(t.port, "127.0.3.1",
                                            f"u{i}-{time.monotonic_ns() % 1000}", "x"))
    for th in threads:
        th.join(30)
    elapsed = time.monotonic() - attack_start
    checks = len(re.findall(r"auth failed: user=u\S+ from=127\.0\.3\.1 ", t.read_log()))
    print(f"{checks} checks from one address in {elapsed:.1f} s")
    assert 3 <= checks <= checks_allowed(elapsed, 2), checks


def test_pipelined_guesses_wait_in_line(make_tpops):
    """30 PASS commands pipelined from one fresh address: past the grace,
    each is checked only after the slot of the one before."""
    t = make_tpops(AuthFailureDelay=1, AuthFailureDelayMax=1)
    t.add_user("bob", "pw", None, "--plain")
    t.start()
    with Pop3(t.port, source="127.0.4.1", timeout=30) as c:
        start = time.monotonic()
        c.send(b"".join(b"USER bob\r\nPASS guess%d\r\n" % i for i in range(30)))
        time.sleep(5)
    elapsed = time.monotonic() - start
    checks = t.read_log().count("auth failed: user=bob from=127.0.4.1")
    assert 3 <= checks <= 3 + int(elapsed) + 2, checks


# -- APOP only when asked for --

def test_apop_is_off_by_default(make_tpops):
    t = make_tpops()
    del t.settings["APOP"]
    t.write_config()
    t.add_user("bob", "pw", None, "--plain")
    # tpops-dbinit says what a plaintext password (APOP's kind) needs
    assert b'set "APOP: yes"' in t.tool("tpops-dbinit").stdout
    t.start()
    with Pop3(t.port) as c:
        assert c.greeting == b"+OK tpops ready"
        assert c.cmd("APOP bob 0123456789abcdef0123456789abcdef").startswith(b"-ERR")
        assert c.login("bob", "pw").startswith(b"+OK")
    assert "auth failed" not in t.read_log()


def test_apop_when_configured(make_tpops):
    """The seed-compatibility case: a plaintext-stored password and
    APOP: yes, logged in by Python's poplib with APOP."""
    import poplib
    t = make_tpops(APOP="yes")
    t.add_user("tommy", "tommy-pw", None, "--plain")
    t.start()
    p = poplib.POP3("127.0.0.1", t.port, timeout=10)
    assert re.match(rb"\+OK tpops ready <[^>]+@tpops\.test>", p.getwelcome())
    assert p.apop("tommy", "tommy-pw").startswith(b"+OK")
    p.quit()


def mail_client_env(tmp_path):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return dict(os.environ, HOME=str(home), MAILRC="/dev/null", TERM="dumb", LC_ALL="C.UTF-8")


@pytest.mark.skipif(shutil.which("s-nail") is None, reason="needs s-nail")
def test_s_nail_defaults_log_in_first_try(make_tpops, tmp_path):
    """s-nail with nothing set but the password: it uses APOP whenever the
    greeting offers it, so this works only because APOP is off."""
    t = make_tpops()
    del t.settings["APOP"]
    t.write_config()
    mail = t.add_user("erin", "erin-pw")
    t.store(mail, b"Subject: defaults\r\n\r\nhello\r\n")
    t.start()
    env = mail_client_env(tmp_path)
    r = subprocess.run(
        ["s-nail", "-:/", "-N", "-#", "-Sv15-compat", "-Spassword=erin-pw",
         "-f", f"pop3://erin@127.0.0.1:{t.port}"],
        input="headers\nquit\n", capture_output=True, text=True, env=env, timeout=60)
    assert "defaults" in r.stdout, (r.stdout, r.stderr)
    log = t.read_log()
    assert "auth failed" not in log, log
    assert "login: user=erin" in log, log


@pytest.mark.skipif(shutil.which("neomutt") is None, reason="needs neomutt")
def test_neomutt_defaults_log_in_first_try(make_tpops, tmp_path):
    t = make_tpops()
    del t.settings["APOP"]
    t.write_config()
    mail = t.add_user("erin", "erin-pw")
    t.store(mail, b"Subject: for neomutt\r\n\r\nhello\r\n")
    t.start()
    env = mail_client_env(tmp_path)
    rc = tmp_path / "neomuttrc"
    rc.write_text(f"set pop_user=erin\nset pop_pass=erin-pw\nset pop_host=pop://127.0.0.1:{t.port}\n"
                  f"set folder={tmp_path}/Mail\nset spoolfile={tmp_path}/Mail/inbox\n"
                  "set mbox_type=mbox\nset pop_delete=no\nset ssl_starttls=no\n"
                  "set ssl_force_tls=no\nset quit=yes\n")
    (tmp_path / "Mail").mkdir()
    (tmp_path / "Mail" / "inbox").write_text("")
    # fetch-mail (G), then quit, on a terminal (script(1) makes one);
    # pop_authenticators unset: neomutt's default order, which tries APOP
    # first whenever the greeting offers it
    env["TERM"] = "xterm"
    r = subprocess.run(["script", "-qec", f"neomutt -n -F {rc} -e 'push G<quit>'", "/dev/null"],
                       capture_output=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    log = t.read_log()
    assert "auth failed" not in log, (log, r.stdout[-2000:])
    assert re.search(r"login: user=erin from=127\.0\.0\.1 method=\S+ ", log), (log, r.stdout[-2000:])
    assert "for neomutt" in (tmp_path / "Mail" / "inbox").read_text()


# -- one login rule for both databases --

@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_login_rule_and_case_variants(make_tpops, backend):
    """ASCII letters in either case name the user, nothing else does (not
    an accent, not a trailing space), in SQLite and MariaDB alike, for
    logins and for delivery addresses; and guesses in case variants count
    as guesses at one login."""
    t = make_tpops(backend=backend, AuthFailureDelay=1, AuthFailureDelayMax=2)
    t.add_user("alice", "secret", "alice@example.com")
    t.start()
    with Pop3(t.port) as c:
        assert c.login("ALICE", "secret").startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    # (a trailing space through SASL PLAIN: USER's argument ends at it)
    for other in ["\u00c4LICE", "\u00e4lice", "alice   ", "alic"]:
        with Pop3(t.port, source="127.0.6.1") as c:
            plain = base64.b64encode(f"\0{other}\0secret".encode()).decode()
            assert c.cmd(f"AUTH PLAIN {plain}").startswith(b"-ERR [AUTH]"), other
    log = t.read_log()
    assert log.count("reason=unknown user") == 4, log
    # the stand-in's sample of stored schemes works on this engine
    assert "measuring the stored password schemes" not in log, log
    # delivery: the same rule for addresses
    assert t.store("ALICE@Example.COM", b"Subject: upper\r\n\r\nx\r\n", check=False) == 0
    assert t.store("\u00c4lice@example.com", b"Subject: accent\r\n\r\nx\r\n", check=False) != 0
    assert t.store("alice@example.com ", b"Subject: space\r\n\r\nx\r\n", check=False) != 0
    with Pop3(t.port, source="127.0.0.2") as c:
        assert c.login("alice", "secret").startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 1 ")
        assert c.cmd("QUIT").startswith(b"+OK")
    # guesses in case variants from many addresses: one login's rate
    variants = ["ALICE", "Alice", "aLice", "alIce", "aliCe", "alicE", "ALice", "alICE"]
    attack_start = time.monotonic()
    threads = run_attack(6, lambda i: guess(t.port, f"127.0.7.{i + 1}",
                                            variants[i % len(variants)], f"g{i}"))
    for th in threads:
        th.join(30)
    elapsed = time.monotonic() - attack_start
    checks = len(re.findall(r"auth failed: user=\S+ from=127\.0\.7\.", t.read_log()))
    print(f"{backend}: {checks} checks of case variants in {elapsed:.1f} s")
    assert 3 <= checks <= checks_allowed(elapsed, 2), checks


# -- the time of a wrong password --

TIMING_SCHEMES = ["SHA512-CRYPT", "BLF-CRYPT", "YESCRYPT", "ARGON2ID"]


def light_hashes(password):
    """Stored passwords of every scheme, made with libxcrypt and libargon2
    themselves, cheaper than tpops' own (which take up to a second per
    check on a loaded test machine: what is tested is that tpops measures
    whatever the database holds): the crypt schemes at a few
    milliseconds, Argon2id (8 MiB, 2 passes) several times costlier, as a
    site's Argon2id users would be."""
    import ctypes
    import ctypes.util
    xcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    xcrypt.crypt_gensalt.restype = ctypes.c_char_p
    xcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                     ctypes.c_int]
    xcrypt.crypt.restype = ctypes.c_char_p
    xcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]

    def crypt(prefix, count):
        setting = xcrypt.crypt_gensalt(prefix.encode(), count, None, 0)
        assert setting, prefix
        return xcrypt.crypt(password.encode(), setting).decode()

    argon2 = ctypes.CDLL(ctypes.util.find_library("argon2") or "libargon2.so.1")
    u32, size = ctypes.c_uint32, ctypes.c_size_t
    argon2.argon2id_hash_encoded.argtypes = [u32, u32, u32, ctypes.c_char_p, size,
                                             ctypes.c_char_p, size, size, ctypes.c_char_p, size]
    salt, out, pw = os.urandom(16), ctypes.create_string_buffer(256), password.encode()
    assert argon2.argon2id_hash_encoded(2, 8192, 1, pw, len(pw), salt, 16, 32, out, 256) == 0
    return {"SHA512-CRYPT": "{SHA512-CRYPT}" + crypt("$6$", 5000),
            "BLF-CRYPT": "{BLF-CRYPT}" + crypt("$2b$", 5),
            "YESCRYPT": "{YESCRYPT}" + crypt("$y$", 1),
            "ARGON2ID": "{ARGON2ID}" + out.value.decode()}


def test_wrong_password_time_tells_neither_user_nor_scheme(make_tpops):
    """Medians of N wrong passwords (AuthFailureDelay 0, so no delay hides
    anything) for an unknown user and for users of every scheme: within
    10 % of each other. The rounds interleave the kinds, so that a busy
    moment of the machine weighs on all of them alike."""
    n = int(os.environ.get("TPOPS_TIMING_ROUNDS", "50"))
    t = make_tpops()
    for scheme, stored in light_hashes("right").items():
        t.add_user(f"u-{scheme.lower()}", "right", None, "--scheme", scheme)
        t.sql("UPDATE \"user\" SET passwd = ? WHERE login = ?", (stored, f"u-{scheme.lower()}"))
    t.start()
    kinds = ["nobody-here"] + [f"u-{s.lower()}" for s in TIMING_SCHEMES]
    times = {k: [] for k in kinds}
    # one round first: the stand-in is calibrated at the first check
    with Pop3(t.port) as c:
        assert c.login("nobody-here", "wrong").startswith(b"-ERR [AUTH]")
    with Pop3(t.port, timeout=30) as c:
        for _ in range(n):
            for kind in kinds:
                assert c.cmd(f"USER {kind}").startswith(b"+OK")
                start = time.monotonic()
                reply = c.cmd("PASS wrong")
                times[kind].append(time.monotonic() - start)
                assert reply == b"-ERR [AUTH] Authentication failed", reply
    medians = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print("medians (ms):", {k: round(v * 1000, 1) for k, v in medians.items()})
    low, high = min(medians.values()), max(medians.values())
    assert high <= 1.10 * low, medians


# -- the SCRAM salt key without configuration --

def scram_salt(port, login):
    with Pop3(port) as c:
        reply = c.cmd("AUTH SCRAM-SHA-256 " + b64(f"n,,n={login},r=clientnonce0123456789"))
        fields = dict(kv.split("=", 1) for kv in sasl_line(reply).decode().split(","))
        c.cmd("*")
        return base64.b64decode(fields["s"])


def test_scram_salts_need_no_auth_secret(make_tpops):
    """Without AuthSecret the salt offered for an unknown login comes from
    a random key tpops-dbinit stored in the database: stable across
    restarts, different for another installation with the same Hostname,
    and not the one anybody can compute from the Hostname."""
    import hmac
    salts = []
    for name in ["one", "two"]:
        t = make_tpops(name, AuthMechanisms="SCRAM-SHA-256 PLAIN")
        t.start()
        salts.append(scram_salt(t.port, "nobody-here"))
        t.stop()
        t.start()
        assert scram_salt(t.port, "nobody-here") == salts[-1]  # kept
        assert "no SCRAM salt key" not in t.read_log()
        # tpops-dbinit again keeps the key
        t.tool("tpops-dbinit")
        t.stop()
        t.start()
        assert scram_salt(t.port, "nobody-here") == salts[-1]
    assert salts[0] != salts[1]
    from_hostname = hmac.new(b"tpops SCRAM salt key of tpops.test",
                             b"tpops SCRAM-SHA-256 salt\0nobody-here", "sha256").digest()[:16]
    assert from_hostname not in salts
    # (the computation above is the server's: with that text as
    # AuthSecret, the server offers exactly that salt)
    t = make_tpops("three", AuthMechanisms="SCRAM-SHA-256",
                   AuthSecret="tpops SCRAM salt key of tpops.test")
    t.start()
    assert scram_salt(t.port, "nobody-here") == from_hostname
