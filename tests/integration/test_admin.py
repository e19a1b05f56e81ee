"""Seeing and steering a running daemon: the metrics page (checked with
promtool, and counted against exactly what the test did), GET /health
following a real MariaDB going down and up, and tpops-admin who / kick /
stats / reload over the control socket, which serves only root and the
daemon's user."""
import os
import poplib
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import IS_ROOT, TOOL_ASAN, Client, free_port, program
from pop3tls import cert, client_context, tls_settings  # noqa: F401 (fixture)

PROMTOOL = shutil.which("promtool")


def msg(n, size):
    """A message whose POP3 size (CRLF line ends) is known: n's header and
    a body of `size` octets in 100-octet lines."""
    body = b"".join(b"x" * 98 + b"\r\n" for _ in range(size // 100))
    return b"Subject: message %d\r\n\r\n" % n + body


def scrape(t, path="/metrics", accept=None):
    """(status, content type, body) of a GET on the metrics listener."""
    req = urllib.request.Request(f"http://127.0.0.1:{t.metrics_port}{path}")
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def curl_metrics(t):
    """The page as curl fetches it (the issue's test: scraped with curl)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10",
                        f"http://127.0.0.1:{t.metrics_port}/metrics"],
                       capture_output=True, timeout=30, check=True)
    return r.stdout.decode()


def values(text):
    """{'name{labels}': float} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def promtool_ok(text):
    assert PROMTOOL, "promtool not found: install Debian's prometheus (scripts/deps.sh test)"
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def admin(t, *args, user=None, socket_path=None):
    """Runs tpops-admin (as `user`, a uid/gid pair, when given)."""
    env = dict(os.environ, ASAN_OPTIONS=TOOL_ASAN,
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    argv = [program("tpops-admin")]
    argv += ["-s", socket_path] if socket_path else ["-c", t.conf]
    preexec = None
    if user is not None:
        uid, gid = user

        def preexec():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
    return subprocess.run(argv + list(args), capture_output=True, timeout=60, env=env,
                          preexec_fn=preexec)


def with_metrics(make_tpops, **settings):
    port = free_port()
    t = make_tpops(MetricsListen=f"127.0.0.1:{port}", **settings)
    t.metrics_port = port
    return t


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_metrics_count_exactly_what_the_clients_did(make_tpops, client_for):
    t = with_metrics(make_tpops, MaxConnectionsPerIP=3)
    t.add_user("alice", "secret")
    t.add_user("bob", "pw", None, "--plain")
    sizes = [1200, 3400, 560]
    for i, size in enumerate(sizes):
        t.store("alice@example.com", msg(i + 1, size))
    t.start()
    pop_sizes = []

    # 3 logins with USER/PASS and one with APOP, 2 failures
    for _ in range(2):
        p = poplib.POP3("127.0.0.1", t.port, timeout=10)
        p.user("alice")
        p.pass_("secret")
        if not pop_sizes:
            pop_sizes = [int(line.split()[1]) for line in p.list()[1]]
            assert len(pop_sizes) == 3
        p.quit()
    p = poplib.POP3("127.0.0.1", t.port, timeout=10)
    p.apop("bob", "pw")
    p.quit()
    for password in ("wrong", "also-wrong"):
        p = poplib.POP3("127.0.0.1", t.port, timeout=10)
        p.user("alice")
        with pytest.raises(poplib.error_proto):
            p.pass_(password)
        p.quit()

    # 2 RETRs of known sizes and a DELE, committed at QUIT
    p = poplib.POP3("127.0.0.1", t.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    p.retr(1)
    p.retr(3)
    p.dele(2)
    p.quit()

    # a connection over MaxConnectionsPerIP: refused (once the sessions
    # above have let go of their slots: QUIT's answer comes first)
    wait_for(lambda: values(curl_metrics(t))["tpops_connections_open"] == 0, 10,
             "the closed sessions to be gone")
    held = [client_for(t) for _ in range(3)]
    refused = socket.create_connection(("127.0.0.1", t.port), timeout=10)
    assert refused.recv(512).startswith(b"-ERR [SYS/TEMP] Too many connections")
    refused.close()
    # the held ones: one logged in (transaction), two in authorization
    held[0].login("bob", "pw")

    text = curl_metrics(t)
    promtool_ok(text)
    v = values(text)
    assert v['tpops_logins_total{method="USER",result="ok"}'] == 4
    assert v['tpops_logins_total{method="APOP",result="ok"}'] == 1
    assert v['tpops_logins_total{method="USER",result="failed"}'] == 2
    assert sum(x for k, x in v.items() if k.startswith("tpops_logins_total")) == 7
    assert v["tpops_messages_retrieved_total"] == 2
    assert v["tpops_retrieved_bytes_total"] == pop_sizes[0] + pop_sizes[2]
    assert v["tpops_messages_deleted_total"] == 1
    assert v["tpops_deleted_bytes_total"] == pop_sizes[1]
    assert v['tpops_quit_commits_total{result="ok"}'] == 4
    assert v['tpops_quit_commits_total{result="failed"}'] == 0
    assert v['tpops_connections_refused_total{reason="per_ip_limit"}'] == 1
    assert v['tpops_connections_refused_total{reason="total_limit"}'] == 0
    # t.start() probes with one connection; 6 sessions above; 3 held
    assert v["tpops_connections_accepted_total"] == 1 + 6 + 3
    assert v['tpops_sessions{state="transaction"}'] == 1
    assert v['tpops_sessions{state="authorization"}'] == 2
    assert v["tpops_connections_open"] == 3
    assert v['tpops_login_holds_total{when="after_failure"}'] == 0  # AuthFailureDelay 0
    assert v['tpops_storage_job_duration_seconds_count{kind="login"}'] == 7
    assert v['tpops_storage_job_duration_seconds_count{kind="listing"}'] == 5
    assert v['tpops_storage_job_duration_seconds_count{kind="commit"}'] == 4
    assert v['tpops_storage_job_duration_seconds_bucket{kind="login",le="+Inf"}'] == 7
    assert v['tpops_db_errors_total{host="sqlite"}'] == 0
    assert v["tpops_up"] == 1
    assert v["tpops_io_threads_answering"] >= 1

    # OpenMetrics for a scraper that asks for it
    status, ctype, om = scrape(t, accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and ctype.startswith("application/openmetrics-text"), ctype
    assert om.endswith("# EOF\n")
    assert "# TYPE tpops_logins counter" in om
    assert values(om.replace("# EOF\n", ""))['tpops_logins_total{method="USER",result="ok"}'] == 4
    status, _, body = scrape(t, "/nothing")
    assert status == 404


def quit_commits(t):
    """(ok, failed) of tpops_quit_commits_total."""
    v = values(curl_metrics(t))
    return (v['tpops_quit_commits_total{result="ok"}'],
            v['tpops_quit_commits_total{result="failed"}'])


def test_a_failed_quit_commit_is_counted_and_answered(make_tpops):
    """Maildir: new/ is read-only for the daemon's user at QUIT, so the
    deletion really fails (EACCES): QUIT answers -ERR, the failure is
    counted, nothing is deleted; with new/ writable again the next QUIT
    commits and is counted as such."""
    from backends.maildir import maildir_root
    t = with_metrics(make_tpops, backend="maildir")
    t.add_user("alice", "secret")
    for i in range(2):
        t.store("alice@example.com", msg(i + 1, 300))
    t.start()
    new = os.path.join(maildir_root(t), "alice", "new")
    assert len(os.listdir(new)) == 2

    p = poplib.POP3("127.0.0.1", t.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    p.dele(1)
    os.chmod(new, 0o555)
    try:
        with pytest.raises(poplib.error_proto) as answer:
            p.quit()
    finally:
        os.chmod(new, 0o700)
    assert answer.value.args[0].startswith(b"-ERR [SYS/TEMP] Messages could not be deleted"), \
        answer.value
    assert quit_commits(t) == (0, 1)
    v = values(curl_metrics(t))
    assert v["tpops_messages_deleted_total"] == 0
    assert v['tpops_storage_job_duration_seconds_count{kind="commit"}'] == 1
    assert "1 of 1 deleted messages kept" in t.read_log()
    assert len(os.listdir(new)) == 2

    p = poplib.POP3("127.0.0.1", t.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    assert p.stat()[0] == 2  # nothing was deleted
    p.dele(1)
    assert p.quit().startswith(b"+OK")
    assert quit_commits(t) == (1, 1)
    assert values(curl_metrics(t))["tpops_messages_deleted_total"] == 1
    assert len(os.listdir(new)) == 1


def test_a_quit_commit_with_mariadb_down_is_counted(make_tpops):
    """MariaDB stops between DELE and QUIT: the commit fails, QUIT answers
    -ERR, the failure is counted, and the message is still in the database
    once MariaDB is back."""
    from backends import mysql
    t = with_metrics(make_tpops, backend="mysql")
    t.add_user("alice", "secret")
    t.store("alice@example.com", msg(1, 300))
    t.start()
    server = mysql.server()
    p = poplib.POP3("127.0.0.1", t.port, timeout=30)
    p.user("alice")
    p.pass_("secret")
    p.dele(1)
    try:
        server.stop()
        with pytest.raises(poplib.error_proto) as answer:
            p.quit()
    finally:
        server.start()
    assert answer.value.args[0].startswith(b"-ERR [SYS/TEMP] Messages could not be deleted"), \
        answer.value
    assert quit_commits(t) == (0, 1)
    v = values(curl_metrics(t))
    assert v["tpops_messages_deleted_total"] == 0
    # the commit's worker could not reach that server (a worker with a
    # connection also counts the lost statement in tpops_db_errors_total)
    host = f"127.0.0.1:{server.port}"
    assert v[f'tpops_db_connections_total{{host="{host}",result="failed"}}'] >= 1
    assert "deleting messages at QUIT" in t.read_log()
    assert t.sql("SELECT count(*) FROM msg m JOIN user u ON u.uid = m.uid"
                 " WHERE u.login = 'alice'") == [(1,)]


def test_streaming_and_storage_waits_are_seen(make_tpops):
    """A RETR whose client stops reading is counted as streaming; a QUIT
    whose commit waits for SQLite's write lock (another writer holds it)
    as waiting for storage, its job as running; both end normally."""
    t = with_metrics(make_tpops)
    t.add_user("alice", "secret")
    t.add_user("bob", "pw")
    t.store("alice@example.com", msg(1, 8_000_000))  # more than the socket buffers hold
    t.store("bob@example.com", msg(2, 300))
    t.start()

    def sessions():
        v = values(curl_metrics(t))
        return ({state: v[f'tpops_sessions{{state="{state}"}}']
                 for state in ("authorization", "transaction", "streaming", "waiting_storage")},
                v["tpops_storage_jobs_running"])

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", t.port))
    reader = Client.__new__(Client)
    reader.sock, reader.buf = s, b""
    assert reader.line().startswith(b"+OK")
    reader.login()
    reader.send(b"RETR 1\r\n")  # and no reading for now
    wait_for(lambda: sessions()[0]["streaming"] == 1, 20, "a session streaming")

    bob = Client(t.port, timeout=30)
    bob.login("bob", "pw")
    assert bob.cmd("DELE 1").startswith(b"+OK")
    # another writer holds the write lock; the commit waits for it (up to
    # the 5 s busy timeout: the lock is let go as soon as the wait is seen)
    con = sqlite3.connect(t.settings["SQLite_Path"], timeout=10, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    try:
        bob.send(b"QUIT\r\n")
        wait_for(lambda: sessions()[0]["waiting_storage"] == 1, 4, "the QUIT waiting for storage")
        states, running = sessions()
        assert states == {"authorization": 0, "transaction": 0, "streaming": 1,
                          "waiting_storage": 1}, states
        assert running >= 1
    finally:
        con.rollback()
        con.close()
    assert bob.line().startswith(b"+OK"), "the commit went through once the lock was free"
    bob.close()
    assert quit_commits(t) == (1, 0)

    # the reader reads its message to the end; nothing is left waiting
    s.settimeout(60)
    assert reader.line().startswith(b"+OK")
    got = 0
    while True:
        line = reader.line()
        if line == b".":
            break
        got += len(line) + 2
    assert got >= 8_000_000
    assert reader.cmd("QUIT").startswith(b"+OK")
    reader.close()
    wait_for(lambda: sessions() == ({"authorization": 0, "transaction": 0, "streaming": 0,
                                     "waiting_storage": 0}, 0), 10, "no session left")
    v = values(curl_metrics(t))
    assert v["tpops_messages_retrieved_total"] == 1
    assert quit_commits(t) == (2, 0)


def test_the_total_limit_refusal_is_counted_as_such(make_tpops, client_for):
    """MaxConnections reached (the per-address limit is not): the refusal
    is counted under total_limit, not per_ip_limit."""
    t = with_metrics(make_tpops, MaxConnections=2, MaxConnectionsPerIP=10)
    t.start()
    wait_for(lambda: values(curl_metrics(t))["tpops_connections_open"] == 0, 10,
             "start()'s probe to be gone")
    held = [client_for(t) for _ in range(2)]
    refused = socket.create_connection(("127.0.0.1", t.port), timeout=10)
    assert refused.recv(512).startswith(b"-ERR [SYS/TEMP] Too many connections")
    refused.close()
    v = values(curl_metrics(t))
    assert v['tpops_connections_refused_total{reason="total_limit"}'] == 1
    assert v['tpops_connections_refused_total{reason="per_ip_limit"}'] == 0
    assert v["tpops_connections_open"] == 2
    assert v["tpops_connections_accepted_total"] == 1 + 2


def test_failed_login_holds_are_counted(make_tpops):
    t = with_metrics(make_tpops, AuthFailureDelay=3)
    t.add_user("alice", "secret")
    t.start()
    c = Client(t.port, timeout=20)
    assert c.cmd("USER alice").startswith(b"+OK")
    c.send(b"PASS wrong\r\n")
    # while its answer is held back, the session is in the login delay
    wait_for(lambda: values(curl_metrics(t))['tpops_sessions{state="login_delay"}'] == 1, 10,
             "a session in the login delay")
    assert c.line().startswith(b"-ERR [AUTH]")
    c.close()
    v = values(curl_metrics(t))
    assert v['tpops_login_holds_total{when="after_failure"}'] == 1
    assert v['tpops_logins_total{method="USER",result="failed"}'] == 1


def test_tls_handshakes_and_the_tls_refusal_are_counted(make_tpops, cert):
    t = with_metrics(make_tpops, RequireTLS="yes", **tls_settings(cert))
    t.add_user("alice", "secret")
    t.start()
    ctx = client_context(cert)
    p = poplib.POP3_SSL("127.0.0.1", t.settings["TLS_Port"], context=ctx, timeout=10)
    p.user("alice")
    p.pass_("secret")
    r = admin(t, "who")
    assert r.returncode == 0, r.stderr
    rows = who_rows(r.stdout)
    assert [(row[0], row[7]) for row in rows] == [("alice", "yes")], r.stdout
    p.quit()
    # a handshake that fails: the client does not trust the certificate
    with pytest.raises(ssl.SSLError):
        poplib.POP3_SSL("127.0.0.1", t.settings["TLS_Port"],
                        context=ssl.create_default_context(), timeout=10)
    # USER in the clear under RequireTLS
    c = Client(t.port)
    assert c.cmd("USER alice").startswith(b"-ERR [AUTH]")
    c.close()

    def counted():
        v = values(curl_metrics(t))
        return (v['tpops_tls_handshakes_total{result="ok"}'] == 1
                and v['tpops_tls_handshakes_total{result="failed"}'] == 1)
    wait_for(counted, 10, "one good and one failed handshake counted")
    v = values(curl_metrics(t))
    assert v['tpops_connections_refused_total{reason="tls_required"}'] == 1
    # the one session that finished its handshake, by who encrypts it
    kernel = v['tpops_tls_sessions_total{encrypted_by="kernel"}']
    user_space = v['tpops_tls_sessions_total{encrypted_by="openssl"}']
    assert kernel + user_space == 1, v
    with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
        if "tls" not in f.read().split():
            assert user_space == 1, "no kernel TLS here, yet a session was counted as the kernel's"


def test_maildir_listing_cache_is_counted(make_tpops):
    t = with_metrics(make_tpops, backend="maildir")
    t.add_user("alice", "secret")
    t.store("alice@example.com", msg(1, 300))
    t.start()
    for _ in range(3):
        p = poplib.POP3("127.0.0.1", t.port, timeout=10)
        p.user("alice")
        p.pass_("secret")
        p.quit()
    v = values(curl_metrics(t))
    hit = v['tpops_maildir_listing_cache_total{result="hit"}']
    miss = v['tpops_maildir_listing_cache_total{result="miss"}']
    assert hit + miss == 3 and miss >= 1


def who_rows(out):
    lines = out.decode().splitlines()
    assert lines[1].split() == ["LOGIN", "PEER", "STATE", "SINCE", "MESSAGES", "RETR", "SENT",
                                "TLS", "THREAD"], out
    return [line.split() for line in lines[2:]]


def test_who_kick_and_a_new_login_at_once(make_tpops):
    t = make_tpops()
    t.add_user("alice", "secret")
    t.add_user("bob", "pw")
    for i in range(2):
        t.store("alice@example.com", msg(i, 500))
    t.start()
    p = poplib.POP3("127.0.0.1", t.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    p.retr(1)
    other = Client(t.port)  # not logged in: not listed

    r = admin(t, "who")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"1 session logged in"), r.stdout
    rows = who_rows(r.stdout)
    assert len(rows) == 1
    login, peer, state, since, messages, retr, sent, tls, thread = rows[0]
    assert (login, peer, state, messages, retr, tls) == \
        ("alice", "127.0.0.1", "transaction", "2", "1", "no")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", since)
    assert int(sent) > 500  # greeting, replies and the message
    assert int(thread) >= 0

    r = admin(t, "kick", "alice")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"1 session of alice ended"), r.stdout
    with pytest.raises((poplib.error_proto, EOFError, OSError)):
        p.stat()
    # the lock went with the session: a new login works at once
    q = poplib.POP3("127.0.0.1", t.port, timeout=10)
    q.user("alice")
    assert q.pass_("secret").startswith(b"+OK")
    assert q.stat()[0] == 2  # nothing was deleted
    q.quit()

    r = admin(t, "kick", "bob")
    assert r.returncode == 1
    assert b"no session of bob" in r.stderr
    other.close()
    assert "kick user=alice" in t.read_log()


def test_stats_and_reload(make_tpops):
    t = make_tpops()
    t.add_user("alice", "secret")
    t.start()
    p = poplib.POP3("127.0.0.1", t.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    p.quit()
    r = admin(t, "stats")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "Login attempts by method and result." in out
    assert re.search(r"method=USER result=ok\s+1\n", out), out

    r = admin(t, "reload")
    assert r.returncode == 0, r.stderr
    assert b"reload applied" in r.stdout and b"configuration reloaded from" in r.stdout
    with open(t.conf, "a") as f:
        f.write("CommandTimeout: soon\n")
    r = admin(t, "reload")
    assert r.returncode == 1
    assert b"reload refused" in r.stderr and b"CommandTimeout" in r.stderr, r.stderr
    t.assert_alive()


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")
def test_control_socket_serves_only_root_and_the_daemon_user(make_tpops, tmpdir_shared):
    """The daemon runs as `daemon` (group nogroup); `nobody`, whose group
    may open the socket file, is refused by the daemon itself; a user
    outside the group cannot even connect."""
    import grp
    import pwd
    daemon_user = pwd.getpwnam("daemon")
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup").gr_gid
    db_dir = os.path.join(tmpdir_shared, "db")
    os.makedirs(db_dir)
    os.chown(db_dir, daemon_user.pw_uid, nogroup)
    t = make_tpops(User="daemon", Group="nogroup", SQLite_Path=os.path.join(db_dir, "tpops.db"))
    t.start()
    sock = t.settings["ControlSocket"]
    st = os.stat(sock)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, nogroup, 0o660)

    assert admin(t, "who", socket_path=sock).returncode == 0  # root
    r = admin(t, "who", socket_path=sock, user=(daemon_user.pw_uid, nogroup))
    assert r.returncode == 0, r.stderr
    r = admin(t, "who", socket_path=sock, user=(nobody.pw_uid, nogroup))
    assert r.returncode == 77, (r.returncode, r.stdout, r.stderr)
    assert b"permission denied" in r.stderr
    assert "control: refused uid %d" % nobody.pw_uid in t.read_log()
    bin_user = pwd.getpwnam("bin")
    r = admin(t, "who", socket_path=sock, user=(bin_user.pw_uid, bin_user.pw_gid))
    assert r.returncode == 77 and b"Permission denied" in r.stderr, r.stderr


def test_metrics_listen_refuses_a_public_address_unless_told(make_tpops):
    t = make_tpops()
    t.write_config(MetricsListen="192.0.2.1:9110")
    r = subprocess.run([program("tpops"), "-t", "-c", t.conf], capture_output=True, timeout=60)
    assert r.returncode == 78
    assert b"MetricsListen" in r.stderr and b"public" in r.stderr, r.stderr
    t.write_config(MetricsListen="192.0.2.1:9110 public")
    r = subprocess.run([program("tpops"), "-t", "-c", t.conf], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_health_follows_the_database(make_tpops):
    from backends import mysql
    t = with_metrics(make_tpops, backend="mysql")
    t.start()
    server = mysql.server()
    host = f"127.0.0.1:{server.port}"
    wait_for(lambda: scrape(t, "/health")[0] == 200, 30, "/health 200")
    try:
        server.stop()
        wait_for(lambda: scrape(t, "/health")[0] == 503, 30, "/health 503 with MariaDB down")
        status, _, body = scrape(t, "/health")
        assert "database" in body, body
        assert values(curl_metrics(t))["tpops_up"] == 0
    finally:
        server.start()
    wait_for(lambda: scrape(t, "/health")[0] == 200, 30, "/health 200 with MariaDB back")
    v = values(curl_metrics(t))
    assert v[f'tpops_db_connections_total{{host="{host}",result="failed"}}'] >= 1
    assert v[f'tpops_db_reconnects_total{{host="{host}"}}'] >= 1
    assert v["tpops_up"] == 1
