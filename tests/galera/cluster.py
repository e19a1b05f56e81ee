"""A real 3-node MariaDB Galera cluster on loopback for the Galera tests
(Debian's galera-4 and mariadb-server): every node has its own data
directory, a free port for mysqld, one for group communication (gcomm), one
for incremental state transfer (IST) and one for full state transfer (SST,
by mariabackup, as docs/mysql.md recommends: Debian's mariadb-backup and
socat). Each node is started, killed and stopped by the PID of its own
mariadbd; nothing else on the machine is touched."""
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from backends.mysql import DB_PASS, DB_USER, _find, pymysql

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
# the donor's mariabackup logs in as this user (over the unix socket)
SST_USER, SST_PASS = "tpops_sst", "tpops-sst-secret"


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _free_port():
    """A free loopback port below the ephemeral range: the nodes' outgoing
    connections (gcomm, SST, IST) take ephemeral ports, and a node that
    restarts must find its own ports free again."""
    low, _ = _ephemeral_range()
    for _ in range(1000):
        port = random.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class Node:
    def __init__(self, cluster, n):
        self.cluster = cluster
        self.n = n
        self.name = f"node{n}"
        self.dir = os.path.join(cluster.dir, self.name)
        self.datadir = os.path.join(self.dir, "data")
        os.makedirs(self.datadir)
        os.chmod(self.dir, 0o755)
        if cluster.run_user:
            shutil.chown(self.dir, cluster.run_user, cluster.run_user)
            shutil.chown(self.datadir, cluster.run_user, cluster.run_user)
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.log = os.path.join(self.dir, "error.log")
        # The node's only option file. The SST scripts read their options
        # through my_print_defaults, which with --no-defaults would read
        # the machine's /etc/mysql; this file keeps them to the test's:
        # the SST's own logs in the data directories (not syslog), none
        # archived in /tmp. The buffer pool's size is here, not on the
        # command line: the donor's script would hand that on to
        # mariadb-backup, which refuses it (10.11).
        self.cnf = os.path.join(self.dir, "my.cnf")
        with open(self.cnf, "w") as f:
            f.write("[mysqld]\ninnodb-buffer-pool-size = 64M\n"
                    "[sst]\nsst-syslog = -1\nsst-log-archive = 0\n")
        os.chmod(self.cnf, 0o644)
        self.port, self.gcomm, self.ist, self.sst = (_free_port() for _ in range(4))
        self.proc = None

    def args(self, bootstrap):
        c = self.cluster
        peers = ",".join(f"127.0.0.1:{m.gcomm}" for m in c.nodes)
        # short failure detection: a killed node leaves the primary
        # component within seconds (the defaults take up to 15 s)
        provider = ";".join([
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm}",
            f"ist.recv_addr=127.0.0.1:{self.ist}",
            "gcache.size=64M",
            "evs.keepalive_period=PT1S", "evs.suspect_timeout=PT3S",
            "evs.inactive_timeout=PT6S", "evs.install_timeout=PT6S",
            "pc.wait_prim_timeout=PT30S",
        ])
        return [
            c.mariadbd, f"--defaults-file={self.cnf}", f"--datadir={self.datadir}",
            f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--pid-file={os.path.join(self.dir, 'mariadbd.pid')}", f"--log-error={self.log}",
            "--skip-name-resolve", "--max-connections=500",
            "--innodb-flush-log-at-trx-commit=2", "--innodb-doublewrite=0",
            "--innodb-log-file-size=48M",
            "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
            "--default-storage-engine=InnoDB",
            "--wsrep-on=ON", f"--wsrep-provider={PROVIDER}",
            f"--wsrep-cluster-name={c.name}", f"--wsrep-node-name={self.name}",
            f"--wsrep-node-address=127.0.0.1:{self.gcomm}",
            "--wsrep-cluster-address=gcomm://" + ("" if bootstrap else peers),
            f"--wsrep-provider-options={provider}",
            "--wsrep-sst-method=mariabackup", f"--wsrep-sst-auth={SST_USER}:{SST_PASS}",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst}",
            "--wsrep-mode=REQUIRED_PRIMARY_KEY",
            *c.as_root,
        ]

    def start(self, bootstrap=False, timeout=120):
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(self.args(bootstrap), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.dir)
        self.wait_synced(timeout)
        os.chmod(self.socket, 0o777)

    def wait_synced(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: mariadbd exited {self.proc.returncode}:\n"
                                   + self.read_log())
            try:
                if self.status("wsrep_local_state_comment") == "Synced" and \
                        self.status("wsrep_ready") == "ON":
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not reach Synced:\n" + self.read_log())

    def status(self, name):
        with self.connect() as c, c.cursor() as cur:
            cur.execute("SHOW STATUS LIKE %s", (name,))
            row = cur.fetchone()
            return row[1] if row else None

    def kill9(self):
        """kill -9 of this node's mariadbd (by its PID)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def connect(self, database=None, **kw):
        return pymysql().connect(unix_socket=self.socket, user="root", password="",
                                 database=database, charset="utf8mb4", autocommit=True,
                                 connect_timeout=5, **kw)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


class Cluster:
    def __init__(self, size=3):
        self.mariadbd = _find("mariadbd")
        install_db = _find("mariadb-install-db")
        if not os.path.exists(PROVIDER):
            raise RuntimeError(f"{PROVIDER} not found: the Galera tests need Debian's "
                               "galera-4 (scripts/deps.sh test installs it)")
        for tool in ("mariadb-backup", "mbstream", "socat", "ss"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} not found: Galera's mariabackup SST needs it "
                                   "(scripts/deps.sh test installs it)")
        pymysql()
        self.dir = tempfile.mkdtemp(prefix="tpops-galera-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.name = os.path.basename(self.dir)
        # As root, the nodes run as Debian's `mysql` user, as the packaged
        # server does, and so do the SST scripts they start.
        self.run_user = "mysql" if os.geteuid() == 0 else None
        self.as_root = [f"--user={self.run_user}"] if self.run_user else []
        self.nodes = []
        self.nodes = [Node(self, n) for n in range(1, size + 1)]
        first = self.nodes[0]
        r = subprocess.run([install_db, "--no-defaults", f"--datadir={first.datadir}",
                            "--auth-root-authentication-method=normal", "--skip-test-db",
                            *self.as_root], capture_output=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("mariadb-install-db failed:\n" + r.stdout.decode(errors="replace")
                               + r.stderr.decode(errors="replace"))
        try:
            first.start(bootstrap=True)
            with first.connect() as c, c.cursor() as cur:
                cur.execute(f"CREATE USER '{DB_USER}'@'%' IDENTIFIED BY '{DB_PASS}'")
                cur.execute(f"GRANT ALL PRIVILEGES ON `tpops\\_%`.* TO '{DB_USER}'@'%'")
                cur.execute(f"CREATE USER '{SST_USER}'@'localhost' IDENTIFIED BY '{SST_PASS}'")
                cur.execute("GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* "
                            f"TO '{SST_USER}'@'localhost'")
            # the others join and receive the first node's state (SST)
            for node in self.nodes[1:]:
                node.start()
        except BaseException as e:
            logs = "\n".join(f"== {n.name}\n{n.read_log()}" for n in self.nodes)
            self.destroy()
            raise RuntimeError(f"the Galera cluster did not come up: {e}\n{logs}") from e

    def size(self, node=None):
        node = node or next(n for n in self.nodes if n.alive())
        return int(node.status("wsrep_cluster_size"))

    def destroy(self):
        for node in reversed(self.nodes):
            node.stop()
        if os.environ.get("TPOPS_GALERA_KEEP"):  # for a post-mortem
            print(f"keeping {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
