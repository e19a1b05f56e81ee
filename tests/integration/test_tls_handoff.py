"""The way from accept to a session (src/handoff.c): POP3S handshakes on
their own threads, then sessions spread over the I/O threads; a failed or
silent handshake gives its connection slot back and holds up neither other
clients nor a shutdown. The handshake after STLS runs on the same threads
(src/session_stls.c), under the session's rules: its slot, its time
limit, one log line when it fails, and in inetd mode too."""
import os
import socket
import subprocess
import time

from conftest import DAEMON_ASAN, TOOL_ASAN, program
from pop3tls import HOST, Pop3, cert, client_context, tls_settings  # noqa: F401 (fixture)

USERS = [f"u{i}" for i in range(8)]


def daemon(make_tpops, cert, **more):
    t = make_tpops(IOThreads=2, **tls_settings(cert, **more))
    for u in USERS:
        t.add_user(u, "pw", None, "--plain")
    t.start()
    return t


def who(t):
    env = dict(os.environ, ASAN_OPTIONS=TOOL_ASAN)
    r = subprocess.run([program("tpops-admin"), "-c", t.conf, "who"], capture_output=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[1].split()[-2:] == ["TLS", "THREAD"], r.stdout
    return [line.split() for line in lines[2:]]


def login(c, user):
    assert c.cmd(f"USER {user}").startswith(b"+OK")
    assert c.cmd("PASS pw").startswith(b"+OK")



def stops_without_waiting_for(t, silent):
    """SIGTERM ends the daemon before the grace period for open sessions
    (10 s) although the connections in silent never finished a handshake."""
    stop_started = time.time()
    assert t.stop() == 0
    assert time.time() - stop_started < 8, t.read_log()
    assert "still open after" not in t.read_log()
    for s in silent:
        s.close()

def test_sessions_spread_over_the_io_threads(make_tpops, cert):
    """Connections made one after the other, as a burst of clients is,
    are served by both I/O threads, over POP3S as in plain text."""
    t = daemon(make_tpops, cert)
    ctx = client_context(cert)
    clients = []
    # four of a kind in a row: the loops take turns over all connections
    for i, u in enumerate(USERS):
        c = Pop3(t.settings["TLS_Port"], tls=ctx) if i < 4 else Pop3(t.port)
        login(c, u)
        clients.append(c)
    rows = who(t)
    assert len(rows) == len(USERS), rows
    tls_threads = {r[-1] for r in rows if r[-2] == "yes"}
    plain_threads = {r[-1] for r in rows if r[-2] == "no"}
    brief = [(r[0], r[-2], r[-1]) for r in rows]
    assert tls_threads == {"0", "1"}, brief
    assert plain_threads == {"0", "1"}, brief
    for c in clients:
        assert c.cmd("QUIT").startswith(b"+OK")
        c.close()


def test_failed_handshakes_give_their_slot_back(make_tpops, cert):
    """Garbage instead of a ClientHello: the connection ends with one log
    line, and its slot is free again (MaxConnectionsPerIP 3: one more for
    the start-up probe, whose session may still be closing)."""
    t = daemon(make_tpops, cert, MaxConnectionsPerIP=3)
    for _ in range(6):
        with socket.create_connection((HOST, t.settings["TLS_Port"]), timeout=10) as s:
            s.sendall(b"USER nobody\r\n" * 20)
            s.settimeout(10)
            try:  # an alert perhaps, then the end (or a reset: input unread)
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    c = Pop3(t.settings["TLS_Port"], tls=client_context(cert))
    login(c, "u0")
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    assert t.read_log().count("TLS handshake failed") >= 6, t.read_log()


def test_silent_handshakes_block_neither_clients_nor_shutdown(make_tpops, cert):
    """Connections that never send a ClientHello wait on the handshake
    threads: a real client is served meanwhile, and SIGTERM ends them at
    once instead of waiting out the grace period for their slots."""
    t = daemon(make_tpops, cert)
    silent = [socket.create_connection((HOST, t.settings["TLS_Port"]), timeout=10)
              for _ in range(20)]
    started = time.time()
    c = Pop3(t.settings["TLS_Port"], tls=client_context(cert))
    login(c, "u1")
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    assert time.time() - started < 10
    stops_without_waiting_for(t, silent)


def stls_garbage(port):
    """STLS, then plain text where the ClientHello should be."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.settimeout(10)
        buf = b""
        while buf.count(b"\r\n") < 1:
            buf += s.recv(4096)
        s.sendall(b"STLS\r\n")
        while buf.count(b"\r\n") < 2:
            buf += s.recv(4096)
        assert buf.split(b"\r\n")[1].startswith(b"+OK"), buf
        s.sendall(b"USER nobody\r\n" * 20)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass


def test_failed_stls_handshakes_give_their_slot_back(make_tpops, cert):
    """Garbage after STLS: the session ends with a line that says why, and
    its slot is free again; a real client then upgrades and logs in."""
    t = daemon(make_tpops, cert, MaxConnectionsPerIP=3)
    for _ in range(6):
        stls_garbage(t.port)
    with Pop3(t.port) as c:
        c.starttls(client_context(cert))
        login(c, "u2")
        assert c.cmd("QUIT").startswith(b"+OK")
    log = t.read_log()
    assert log.count("STLS: TLS handshake failed") >= 6, log


def test_stls_handshake_ends_at_the_connection_time_limit(make_tpops, cert):
    """A client that says STLS and then nothing: with ConnectionKeepTime
    shorter than CommandTimeout, the time limit ends it (the handshake
    thread's deadline is the session's)."""
    t = daemon(make_tpops, cert, ConnectionKeepTime=3, CommandTimeout=60)
    s = socket.create_connection((HOST, t.port), timeout=30)
    buf = b""
    while buf.count(b"\r\n") < 1:
        buf += s.recv(4096)
    started = time.monotonic()
    s.sendall(b"STLS\r\n")
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    took = time.monotonic() - started
    s.close()
    # not CommandTimeout (60 s), nor the POP3S handshake limit (30 s)
    assert 1.5 <= took < 15, took


def test_silent_stls_handshakes_do_not_hold_up_shutdown(make_tpops, cert):
    """Sessions waiting for their STLS handshake on the handshake threads
    end at SIGTERM at once, and a client upgrading meanwhile is served."""
    t = daemon(make_tpops, cert)
    silent = []
    for _ in range(10):
        s = socket.create_connection((HOST, t.port), timeout=10)
        s.recv(512)
        s.sendall(b"STLS\r\n")
        silent.append(s)
    with Pop3(t.port) as c:
        c.starttls(client_context(cert))
        login(c, "u3")
        assert c.cmd("STAT").startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    stops_without_waiting_for(t, silent)


def test_stls_in_inetd_mode(make_tpops, cert):
    """tpops --inetd has a handshake thread too: STLS on the inherited
    socket, then a login inside TLS."""
    t = make_tpops(**tls_settings(cert))
    t.add_user("u0", "pw", None, "--plain")
    ours, theirs = socket.socketpair()
    err_path = os.path.join(t.dir, "inetd.log")
    env = dict(os.environ, ASAN_OPTIONS=DAEMON_ASAN)
    with open(err_path, "wb") as err:
        p = subprocess.Popen([program("tpops"), "--inetd", "-f", "-c", t.conf], stdin=theirs,
                             stdout=theirs, stderr=err, env=env)
    theirs.close()
    try:
        ours.settimeout(20)
        c = Pop3.__new__(Pop3)
        c.sock, c.buf = ours, b""
        assert c.line().startswith(b"+OK")
        c.starttls(client_context(cert))
        login(c, "u0")
        assert c.cmd("QUIT").startswith(b"+OK")
        assert p.wait(timeout=20) == 0
    finally:
        c.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(err_path, "rb") as f:
        log = f.read().decode(errors="replace")
    assert "logout: user=u0" in log, log
    assert "AddressSanitizer" not in log and "runtime error" not in log, log


def thread_nice_values(pid):
    """{thread name: [nice values]} of a process, from /proc."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        nice = int(stat[stat.rindex(")") + 2:].split()[16])
        out.setdefault(name, []).append(nice)
    return out


def test_handshake_threads_are_nicer_than_the_daemon_started_under_nice(make_tpops, cert):
    """A daemon started under `nice -n 10` keeps its order: the handshake
    threads go to 19 (the lowest priority), the others stay at 10, and
    nothing asks to be raised (which a daemon that dropped root may not
    do)."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, 10)
    try:
        t = daemon(make_tpops, cert)
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)
    c = Pop3(t.settings["TLS_Port"], tls=client_context(cert))  # the threads have started
    login(c, USERS[0])
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    values = thread_nice_values(t.proc.pid)
    every = sorted(n for ns in values.values() for n in ns)
    assert every.count(19) == 2, values  # one handshake thread per I/O thread
    assert set(every) == {10, 19}, values
    assert "priority" not in t.read_log(), t.read_log()
