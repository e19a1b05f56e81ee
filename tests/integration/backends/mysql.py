"""The MySQL backend: `Database: mysql` against a real MariaDB server that
the tests start themselves (Debian's mariadb-server: mariadb-install-db
into a temporary directory, mariadbd on a free loopback port and a unix
socket), once per test session, stopped at exit. Every Tpops gets a fresh
database; tpops connects as an ordinary MariaDB user with a password.

When the MariaDB server or PyMySQL is missing, using the backend raises:
the tests fail (scripts/deps.sh test installs both), they never skip."""
import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DB_USER = "tpops"
DB_PASS = "tpops-db-secret"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find(program):
    for d in (None, "/usr/sbin", "/usr/bin", "/usr/local/sbin"):
        path = shutil.which(program, path=d) if d else shutil.which(program)
        if path:
            return path
    raise RuntimeError(
        f"{program} not found: the MySQL tests need Debian's mariadb-server "
        "(scripts/deps.sh test installs it)")


def pymysql():
    try:
        import pymysql as module
    except ImportError as e:
        raise RuntimeError("the MySQL tests need PyMySQL (Debian python3-pymysql; "
                           "scripts/deps.sh test installs it)") from e
    return module


class MariaDB:
    """A private MariaDB server: its own data directory, a free port on
    127.0.0.1 and a unix socket that the daemon's run user can reach."""

    def __init__(self):
        self.install_db = _find("mariadb-install-db")
        self.mariadbd = _find("mariadbd")
        pymysql()
        self.dir = tempfile.mkdtemp(prefix="tpops-mariadb-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.log = os.path.join(self.dir, "error.log")
        self.port = _free_port()
        self.proc = None
        self.as_root = ["--user=root"] if os.geteuid() == 0 else []
        r = subprocess.run([self.install_db, "--no-defaults", f"--datadir={self.datadir}",
                            "--auth-root-authentication-method=normal", "--skip-test-db",
                            *self.as_root],
                           capture_output=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("mariadb-install-db failed:\n" + r.stdout.decode(errors="replace")
                               + r.stderr.decode(errors="replace"))
        self.start()
        with self.connect() as c, c.cursor() as cur:
            cur.execute(f"CREATE USER '{DB_USER}'@'%' IDENTIFIED BY '{DB_PASS}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON `tpops\\_%`.* TO '{DB_USER}'@'%'")

    def start(self):
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [self.mariadbd, "--no-defaults", f"--datadir={self.datadir}",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--pid-file={os.path.join(self.dir, 'mariadbd.pid')}", f"--log-error={self.log}",
             "--skip-name-resolve", "--max-connections=1000",
             # a test machine: durability of the test data does not matter
             "--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0",
             "--innodb-buffer-pool-size=256M", "--innodb-log-file-size=256M",
             *self.as_root],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.proc.returncode}:\n{self.read_log()}")
            try:
                self.connect().close()
                os.chmod(self.socket, 0o777)
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        raise RuntimeError("mariadbd did not start:\n" + self.read_log())

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def connect(self, database=None, charset="utf8mb4", **kw):
        """A root connection over the unix socket."""
        return pymysql().connect(unix_socket=self.socket, user="root", password="",
                                 database=database, charset=charset, autocommit=True,
                                 connect_timeout=5, **kw)

    def create_database(self, name, charset="utf8mb4"):
        with self.connect() as c, c.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET {charset}")
        return name


_server = None
_names = itertools.count(1)


def server():
    """The session's MariaDB server, started on first use."""
    global _server
    if _server is None:
        _server = MariaDB()
        atexit.register(_server.destroy)
    elif _server.proc.poll() is not None:
        _server.start()  # a test stopped it and failed before restarting
    return _server


def new_database(charset="utf8mb4"):
    return server().create_database(f"tpops_{next(_names)}", charset)


def settings(t, database=None):
    s = server()
    return {
        "Database": "mysql",
        "MySQL_Server": "127.0.0.1",
        "MySQL_Port": s.port,
        "MySQL_User": DB_USER,
        "MySQL_Pass": DB_PASS,
        "MySQL_DB": database or new_database(),
    }


def sql(t, statement, params=()):
    """Tpops.sql() for a MySQL installation: the statement may use SQLite's
    `?` placeholders and "quoted" identifiers (ANSI_QUOTES)."""
    statement = statement.replace("%", "%%").replace("?", "%s")
    with server().connect(t.settings["MySQL_DB"]) as c, c.cursor() as cur:
        cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
        cur.execute(statement, tuple(params))
        return [tuple(row) for row in cur.fetchall()]


def register(backends):
    backends["mysql"] = settings
