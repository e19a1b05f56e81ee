"""Fixtures for the integration tests: a real tpops daemon (the ASan+UBSan
build unless TPOPS_BUILD says otherwise) on a free loopback port, against a
real database, and helpers to add users and deliver mail with the real
tools.

Everything runs as the invoking user; when that is root (CI), the daemon
and the tools drop to `nobody`, so the test directory belongs to nobody."""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

BUILD = os.environ.get("TPOPS_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build-asan")
BUILD = os.path.abspath(BUILD)
IS_ROOT = os.geteuid() == 0
RUN_USER = "nobody" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
RUN_GROUP = "nogroup" if IS_ROOT else None

# The daemon outlives nothing it allocates per session at shutdown, so leak
# checking is for the tools; abort_on_error makes a sanitizer report fatal.
DAEMON_ASAN = "detect_leaks=0:abort_on_error=1:quarantine_size_mb=8"
TOOL_ASAN = "detect_leaks=1:abort_on_error=1"
# `make tsan`: a data race report ends the program (and fails the test).
TSAN = "halt_on_error=1:exitcode=66:second_deadlock_stack=1"


def program(name):
    return os.path.join(BUILD, name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_dir(path):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    if IS_ROOT:
        shutil.chown(path, RUN_USER, RUN_GROUP)
    return path


# Storage backends the protocol suite runs against. Each entry maps a name
# to a function(tpops) -> dict of extra tpops.conf settings, called before
# the config is written; backend modules add their entry (see backends/).
BACKENDS = {"sqlite": lambda t: {}}
try:
    from backends import register_all
    register_all(BACKENDS)
except ImportError:
    pass


def selected_backends():
    wanted = os.environ.get("TPOPS_BACKENDS")
    names = list(BACKENDS)
    return [n for n in names if not wanted or n in wanted.split(",")]


class Tpops:
    """One tpops installation: a directory with tpops.conf and a database,
    and at most one running daemon (start/stop may be repeated)."""

    def __init__(self, directory, backend="sqlite", **settings):
        self.dir = make_dir(directory)
        self.backend = backend
        self.port = free_port()
        self.settings = {
            "Port": self.port,
            "Listen": "127.0.0.1",
            "Hostname": "tpops.test",
            "SQLite_Path": os.path.join(self.dir, "tpops.db"),
            "Log": "stderr",
            "Foreground": "yes",
            "AuthFailureDelay": 0,
            # off by default (docs/SECURITY.md); on here for bob's APOP
            # tests; test_auth.py checks the default
            "APOP": "yes",
            "LockLease": 10,
            "CommandTimeout": 60,
            # each daemon its own (the default /run/tpops/control is one per machine)
            "ControlSocket": os.path.join(self.dir, "control"),
        }
        if IS_ROOT:
            self.settings.update(User=RUN_USER, Group=RUN_GROUP)
        self.settings.update(BACKENDS[backend](self))
        self.settings.update(settings)
        self.conf = os.path.join(self.dir, "tpops.conf")
        self.log_path = os.path.join(self.dir, "tpops.log")
        self.proc = None
        self.write_config()
        self.tool("tpops-dbinit")

    def write_config(self, **changes):
        self.settings.update(changes)
        with open(self.conf, "w") as f:
            for key, value in self.settings.items():
                f.write(f"{key}: {value}\n")

    # -- tools --
    def tool(self, name, *args, input=None, check=True, env=None):
        """Runs an admin tool against this installation; returns the
        CompletedProcess (stdout/stderr as bytes)."""
        e = dict(os.environ, ASAN_OPTIONS=TOOL_ASAN, TSAN_OPTIONS=TSAN,
                 UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        if env:
            e.update(env)
        r = subprocess.run([program(name), "-c", self.conf, *map(str, args)],
                           input=input, capture_output=True, env=e, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"{name} {args} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
        return r

    # A backend may set this to a function(login) -> the MAILDIR argument
    # of tpops-useradd (backends/maildir.py makes the Maildir and names it).
    user_maildir = None

    def add_user(self, login, password, mail=None, *extra):
        mail = mail or f"{login}@example.com"
        maildir = [self.user_maildir(login)] if self.user_maildir else []
        self.tool("tpops-useradd", *extra, login, password, mail, *maildir)
        return mail

    def store(self, mail, message, check=True):
        """Delivers one message (bytes) with tpops-store; returns the exit status."""
        r = self.tool("tpops-store", mail, input=message, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"tpops-store exited {r.returncode}: {r.stderr.decode(errors='replace')}")
        return r.returncode

    def sql(self, statement, params=()):
        """Runs SQL directly on the database (SQLite as the test user;
        MySQL as root, see backends/mysql.py)."""
        if self.settings.get("Database") == "mysql":
            from backends import mysql
            return mysql.sql(self, statement, params)
        if self.backend != "sqlite" and "Database" in self.settings and self.settings["Database"] != "sqlite":
            raise NotImplementedError("sql() on " + self.backend)
        import sqlite3
        con = sqlite3.connect(self.settings["SQLite_Path"], timeout=30)
        try:
            cur = con.execute(statement, params)
            rows = cur.fetchall()
            con.commit()
            return rows
        finally:
            con.close()

    # -- daemon --
    def start(self, extra_args=(), asan_options=DAEMON_ASAN, lsan_options=None):
        assert self.proc is None
        env = dict(os.environ, ASAN_OPTIONS=asan_options, TSAN_OPTIONS=TSAN,
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        if lsan_options is not None:
            env["LSAN_OPTIONS"] = lsan_options
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([program("tpops"), "-c", self.conf, *extra_args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tpops exited {self.proc.returncode}:\n{self.read_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.recv(512)
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("tpops did not start listening:\n" + self.read_log())

    def stop(self, sig=15):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.log.close()
        return rc

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def assert_alive(self):
        assert self.proc is not None and self.proc.poll() is None, \
            "tpops died:\n" + self.read_log()

    def pss_kib(self):
        with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        return 0

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


@pytest.fixture
def tmpdir_shared():
    """A temporary directory the unprivileged run user can use."""
    d = tempfile.mkdtemp(prefix="tpops-test-", dir="/tmp")
    make_dir(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_tpops(tmpdir_shared):
    """Factory: make_tpops(**settings) -> Tpops (not started). Every daemon
    is stopped at the end, and the test fails if one crashed or a sanitizer
    reported anything."""
    made = []

    def factory(name="tpops", backend="sqlite", **settings):
        t = Tpops(os.path.join(tmpdir_shared, name), backend, **settings)
        made.append(t)
        return t

    yield factory
    for t in made:
        crashed = t.proc is not None and t.proc.poll() is not None and t.proc.returncode not in (0, -9, -15)
        t.stop()
        log = t.read_log() if os.path.exists(t.log_path) else ""
        assert "ERROR: AddressSanitizer" not in log, log
        assert "WARNING: ThreadSanitizer" not in log, log
        assert "runtime error:" not in log, log
        assert not crashed, log


@pytest.fixture(params=selected_backends())
def backend(request):
    """The storage backend under test; tests that use it (or the tpops
    fixture) run once per backend."""
    return request.param


@pytest.fixture
def tpops(make_tpops, backend):
    """A started daemon with users alice (SHA512-CRYPT, password
    'secret') and bob (plaintext, password 'pw', usable with APOP),
    once per storage backend."""
    t = make_tpops(backend=backend)
    t.add_user("alice", "secret")
    t.add_user("bob", "pw", None, "--plain")
    return t.start()


class Client:
    """A raw POP3 client over a socket, for what poplib does not do
    (pipelining, junk, half-closed connections)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; got " + repr(self.buf))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def multiline(self):
        """The lines of a multi-line answer after its status line,
        dot-unstuffed, without the terminating '.'."""
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def cmd(self, command):
        self.send(command.encode() + b"\r\n" if isinstance(command, str) else command + b"\r\n")
        return self.line()

    def login(self, user="alice", password="secret"):
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        reply = self.cmd(f"PASS {password}")
        assert reply.startswith(b"+OK"), reply
        return reply

    def closed(self, timeout=5):
        """True when the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def client_for():
    made = []

    def factory(t, **kw):
        c = Client(t.port, **kw)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()
