"""Delivery from a real Postfix, end to end (SPEC section 4, issue 4), as
docs/POSTFIX.md sets it up: a private Postfix instance (its own config,
queue and data directories under a temporary directory, SMTP on a free
loopback port, its log in a file there; nothing touches /etc/postfix) whose
`tpops` pipe service runs tpops-store as the unprivileged run user, for the
seed's `fallback_transport = tpops` (domain local.test) and for a virtual
domain with `virtual_transport = tpops` (virt.test). Mail goes in with
smtplib and comes out with poplib, once per storage backend.

A second test has Postfix's own virtual(8) agent write LF Maildirs that
tpops serves as they are (the seed's Postfix patch is not needed).

Postfix must be installed (scripts/deps.sh test installs it) and the tests
must run as root (Postfix's master starts as root): otherwise they fail,
they never skip."""
import contextlib
import os
import poplib
import pwd
import re
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import tempfile
import time

import pytest

from backends import maildir as maildir_backend
from conftest import IS_ROOT, RUN_GROUP, RUN_USER, free_port, program

POSTFIX_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LOCAL = "local.test"      # mydestination: the seed's fallback_transport = tpops
VIRTUAL = "virt.test"     # virtual_mailbox_domains, virtual_transport = tpops
SINK = "sink.test"        # the senders' domain: bounces to it are discarded
SENDER = f"sender@{SINK}"
# Headers that Postfix adds above the message as it was sent: Received
# (smtpd/cleanup), Return-Path and Delivered-To (pipe flags R and D, or
# virtual(8)), X-Original-To (virtual(8)).
ADDED_HEADERS = {b"return-path", b"delivered-to", b"received", b"x-original-to"}

BODY = ("Hello,\r\n"
        ".a line that starts with a dot\r\n"
        "..and one with two\r\n"
        ".\r\n"
        "From the start of a line, as in an mbox (no '>' may appear)\r\n"
        ">From already quoted\r\n"
        "trailing blanks   \r\n"
        "\ttab first, \x01 a control character\r\n"
        "\r\n"
        "\u65e5\u672c\u8a9e\u306e\u672c\u6587 (8-bit UTF-8, no MIME encoding)\r\n"
        + "x" * 998 + "\r\n"
        "last line, then an empty line\r\n"
        "\r\n").encode()


def message(token, to, body=BODY):
    """A complete message (CRLF, as sent over SMTP): with From, Date and
    Message-ID present, Postfix adds no header below the Received line."""
    return (f"From: Sender <{SENDER}>\r\n"
            f"To: {to}\r\n"
            f"Subject: {token}\r\n"
            "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
            f"Message-ID: <{token}@{SINK}>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n").encode() + body


def require_postfix():
    missing = [p for p in ("postfix", "postconf", "postqueue")
               if shutil.which(p, path=POSTFIX_PATH) is None]
    if missing:
        pytest.fail(f"Postfix is not installed ({', '.join(missing)} not found): the Postfix "
                    "tests need Debian's postfix package (scripts/deps.sh test installs it)")
    if not IS_ROOT:
        pytest.fail("the Postfix tests must run as root: Postfix's master process starts as root "
                    "(make check runs them so on CI)")
    for login in ("alice", "bob", "carol", "dave", "erin"):
        try:
            pwd.getpwnam(login)
        except KeyError:
            continue
        pytest.fail(f"a system user {login!r} exists: Postfix's local(8) would deliver "
                    f"{login}@{LOCAL} to it instead of passing it to tpops")


# pipe(8) flags: D Delivered-To, R Return-Path, X final delivery (DSN
# "delivered"), h/u the ${recipient} folded to lower case. No F (an mbox
# "From " line), no "." or ">" (they change the body), no q (tpops-store
# gets the address as stored), no eol= (tpops makes CRLF itself).
PIPE_FLAGS = "DRXhu"

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
lmtp      unix  -       -       n       -       -       lmtp
tpops     unix  -       n       n       -       -       pipe
  flags={flags} user={user} argv={wrapper} ${{recipient}}
"""

WRAPPER = """\
#!/bin/sh
# tpops-store for Postfix's pipe(8), which has no option to set the
# environment: the sanitizer settings of the test build, reports to files.
ASAN_OPTIONS=detect_leaks=0:log_path={reports}/asan
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path={reports}/ubsan
export ASAN_OPTIONS UBSAN_OPTIONS
exec {binary} -c {conf} "$@"
"""

STATUS_LINE = re.compile(r"postfix/(\w+)\[\d+\]: ([0-9A-F]+): to=<([^>]*)>,.*? "
                         r"dsn=(\d\.\d{1,3}\.\d{1,3}), status=(\w+) \((.*)\)$")


class Postfix:
    """A private Postfix instance for one tpops installation."""

    def __init__(self, tpops, reports, files=None, **main):
        self.dir = tempfile.mkdtemp(prefix="tpops-postfix-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.config_dir = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "maillog")
        for d in (self.config_dir, self.queue_dir):
            os.mkdir(d, 0o755)
        os.mkdir(self.data_dir, 0o700)
        shutil.chown(self.data_dir, "postfix")
        self.port = free_port()
        self.master_pid = None
        # the test build of tpops-store, copied where the pipe's user can
        # run it whatever the permissions of the build directory
        binary = os.path.join(self.dir, "tpops-store")
        shutil.copy(program("tpops-store"), binary)
        os.chmod(binary, 0o755)
        wrapper = os.path.join(self.dir, "tpops-store.sh")
        with open(wrapper, "w") as f:
            f.write(WRAPPER.format(reports=reports, binary=binary, conf=tpops.conf))
        os.chmod(wrapper, 0o755)
        self.main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_spool_directory": os.path.join(self.dir, "spool"),
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.dir,
            "myhostname": "mx.postfix.test",
            "mydomain": LOCAL,
            "myorigin": LOCAL,
            "mydestination": LOCAL,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_peername_lookup": "no",
            "alias_maps": "",
            "alias_database": "",
            # every address of local.test is accepted; local(8) passes
            # those without a system account to tpops (the seed's setup)
            "local_recipient_maps": "",
            "fallback_transport": "tpops",
            # virt.test: every address is tpops's; tpops-store decides
            "virtual_mailbox_domains": VIRTUAL,
            "virtual_transport": "tpops",
            "tpops_destination_recipient_limit": "1",
            "transport_maps": "texthash:" + os.path.join(self.config_dir, "transport"),
            "default_transport": "error:this test sends no mail out",
            "biff": "no",
            "notify_classes": "",
            "delay_warning_time": "0",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
        }
        # "{config}" in a value: this instance's config directory
        self.main.update({k: v.format(config=self.config_dir) for k, v in main.items()})
        files = dict(files or {}, transport=f"{SINK} discard:\n")
        for name, text in files.items():
            with open(os.path.join(self.config_dir, name), "w") as f:
                f.write(text)
        self.write_config()
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port, flags=PIPE_FLAGS, user=RUN_USER,
                                     wrapper=wrapper))

    def write_config(self):
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            for key, value in self.main.items():
                f.write(f"{key} = {value}\n")

    def command(self, *args, check=True):
        """Runs a Postfix command on this instance (-c CONFIG_DIR). Output
        goes to a file: `postfix start` leaves a daemon behind that must
        not hold a pipe of ours open."""
        name, rest = args[0], args[1:]
        with tempfile.TemporaryFile() as out:
            r = subprocess.run([shutil.which(name, path=POSTFIX_PATH), "-c", self.config_dir, *rest],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               timeout=60)
            out.seek(0)
            text = out.read().decode(errors="replace")
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {r.returncode}:\n{text}\n{self.read_log()}")
        return text

    def start(self):
        self.command("postfix", "check")  # also makes the queue directories
        self.command("postfix", "start")
        with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
            self.master_pid = int(f.read().strip())
        deadline = time.time() + 20
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as s:
                    s.noop()
                return self
            except OSError:
                if time.time() > deadline:
                    raise AssertionError("Postfix does not answer on its SMTP port:\n"
                                         + self.read_log())
                time.sleep(0.05)

    def processes(self):
        """The pids of this instance's processes: every Postfix process (and
        the commands its pipe runs) has MAIL_CONFIG set to its config dir."""
        mark = b"MAIL_CONFIG=" + self.config_dir.encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                pass
        return pids

    def stop(self):
        if self.master_pid is not None:
            self.command("postfix", "stop", check=False)
            deadline = time.time() + 10
            while self.processes() and time.time() < deadline:
                time.sleep(0.1)
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.master_pid = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- mail --
    def send(self, recipients, msg):
        """Submits one message over SMTP; returns its queue ID."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
            s.ehlo("client.test")
            code, reply = s.mail(SENDER)
            assert code == 250, reply
            for rcpt in recipients:
                code, reply = s.rcpt(rcpt)
                assert code == 250, (rcpt, reply)
            code, reply = s.data(msg)
            assert code == 250, reply
        return re.search(rb"queued as ([0-9A-F]+)", reply).group(1).decode()

    def statuses(self, qid, rcpt):
        """The delivery attempts logged for one recipient of one message:
        [(agent, dsn, status, text)]."""
        found = []
        for line in self.read_log().splitlines():
            m = STATUS_LINE.search(line)
            if m and m.group(2) == qid and m.group(3).lower() == rcpt.lower():
                found.append((m.group(1), m.group(4), m.group(5), m.group(6)))
        return found

    def wait_for(self, qid, rcpt, status, timeout=40):
        """Waits until Postfix logs `status` for rcpt; returns (dsn, text)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for _, dsn, st, text in self.statuses(qid, rcpt):
                if st == status:
                    return dsn, text
                # sent and bounced are final: the awaited status never comes
                assert st == "deferred", f"{qid} to {rcpt}: waiting for {status}, got {st}: {dsn} {text}"
            time.sleep(0.1)
        raise AssertionError(f"{qid} to {rcpt}: no status={status} in {timeout} s:\n"
                             + self.read_log()[-6000:])

    def flush(self):
        self.command("postqueue", "-f")

    def queued(self):
        """Queue IDs still in the queue (postqueue -p)."""
        out = self.command("postqueue", "-p")
        return re.findall(r"^([0-9A-F]+)[*!]?\s", out, re.M)

    def wait_queue_empty(self, timeout=20):
        """Waits until the queue is empty (qmgr removes a message a moment
        after its last recipient is done); fails with what is left."""
        deadline = time.time() + timeout
        while self.queued():
            if time.time() > deadline:
                raise AssertionError("mail left in the queue:\n" + self.command("postqueue", "-p"))
            time.sleep(0.1)

    def sent_once(self, qid, rcpt):
        """Asserts that Postfix logged exactly one successful delivery."""
        sent = [s for s in self.statuses(qid, rcpt) if s[2] == "sent"]
        assert len(sent) == 1, self.statuses(qid, rcpt)


@pytest.fixture
def postfix_for(make_tpops, tmpdir_shared):
    """Factory: postfix_for(tpops, files={name: text}, **main_cf) -> a
    started private Postfix delivering to that installation, with extra
    files in its config directory. At the end each is stopped (leftover
    processes killed), and the test fails on a sanitizer report from
    tpops-store or a fatal error or panic in Postfix's log."""
    require_postfix()
    reports = os.path.join(tmpdir_shared, "sanitizer")
    os.makedirs(reports)
    if IS_ROOT:
        shutil.chown(reports, RUN_USER, RUN_GROUP)
    made = []

    def factory(t, files=None, **main):
        pf = Postfix(t, reports, files, **main)
        made.append(pf)
        return pf.start()

    yield factory
    logs = []
    for pf in made:
        logs.append(pf.read_log())
        pf.stop()
    for name in sorted(os.listdir(reports)):
        with open(os.path.join(reports, name), errors="replace") as f:
            pytest.fail(f"sanitizer report from tpops-store ({name}):\n{f.read()}")
    for log in logs:
        bad = [line for line in log.splitlines() if re.search(r"postfix/[\w-]+\[\d+\]: (fatal|panic):", line)]
        assert not bad, "\n".join(bad)


def fetch_all(t, login, password):
    """Every message of the maildrop over POP3 (RETR; nothing deleted), in
    the octets sent, with the dot-stuffing undone."""
    p = poplib.POP3("127.0.0.1", t.port, timeout=30)
    try:
        p.user(login)
        p.pass_(password)
        count, _ = p.stat()
        msgs = []
        for i in range(1, count + 1):
            _, lines, _ = p.retr(i)
            msgs.append(b"\r\n".join(lines) + b"\r\n")
        p.quit()
    finally:
        p.close()
    return msgs


def with_token(msgs, token):
    return [m for m in msgs if f"Subject: {token}\r\n".encode() in m]


def assert_delivered_once(t, login, password, token, sent, rcpt):
    """The user has exactly one message with token, and it is `sent`
    octet for octet below the header lines Postfix added."""
    found = with_token(fetch_all(t, login, password), token)
    assert len(found) == 1, f"{rcpt}: {len(found)} copies of {token}"
    raw, = found
    assert raw.endswith(sent), raw
    added = raw[:-len(sent)].split(b"\r\n")[:-1]
    names = [line.split(b":", 1)[0].lower() for line in added if not line[:1] in (b" ", b"\t")]
    assert set(names) <= ADDED_HEADERS, added
    assert f"Delivered-To: {rcpt}".lower().encode() in [line.lower() for line in added], added
    assert f"Return-Path: <{SENDER}>".encode() in added, added


def token_of(name):
    return f"{name}-{time.time_ns()}"


@contextlib.contextmanager
def store_down(t, backend):
    """The store fails temporarily: SQLite locked for longer than the busy
    timeout, the MariaDB server stopped, or the Maildir not writable."""
    if backend == "mysql":
        from backends import mysql
        srv = mysql.server()
        srv.stop()
        try:
            yield
        finally:
            srv.start()
    elif backend == "maildir":
        tmp = os.path.join(maildir_backend.maildir_root(t), "alice", "tmp")
        os.chmod(tmp, 0o500)
        try:
            yield
        finally:
            os.chmod(tmp, 0o700)
    else:
        con = sqlite3.connect(t.settings["SQLite_Path"], isolation_level=None, timeout=30)
        con.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            con.execute("ROLLBACK")
            con.close()


def test_postfix_delivers_through_tpops_store(make_tpops, backend, postfix_for):
    """docs/POSTFIX.md setups (a) and (b) with each store: delivered octet
    for octet and once, unknown users and over-quota mail bounced, mail
    deferred while the store or the configuration fails and delivered once
    after, several recipients of one message delivered one by one."""
    t = make_tpops(backend=backend)
    alice = t.add_user("alice", "secret", f"alice@{VIRTUAL}")
    bob = t.add_user("bob", "pw", f"bob@{LOCAL}")
    carol = t.add_user("carol", "pw", f"carol@{VIRTUAL}", "--quota", "4000")
    t.add_user("dave", "pw", f"dave@{VIRTUAL}")
    t.start()
    pf = postfix_for(t)

    # the virtual domain (virtual_transport) and the seed's setup
    # (local.test: no system user, so local(8) hands it to fallback_transport)
    for login, password, rcpt in (("alice", "secret", alice), ("bob", "pw", bob)):
        token = token_of("hello")
        sent = message(token, rcpt)
        qid = pf.send([rcpt], sent)
        dsn, text = pf.wait_for(qid, rcpt, "sent")
        assert dsn == "2.0.0", text
        assert_delivered_once(t, login, password, token, sent, rcpt)

    # unknown addresses bounce: tpops-store exits 67, Postfix says 5.1.1
    # "user unknown" (the sender gets the notice)
    unknown = [f"nosuchuser@{VIRTUAL}", f"nosuchuser@{LOCAL}"]
    qid = pf.send(unknown, message(token_of("unknown"), unknown[0]))
    for rcpt in unknown:
        dsn, text = pf.wait_for(qid, rcpt, "bounced")
        assert dsn == "5.1.1" and "user unknown" in text, (dsn, text)

    # over quota: exit 73, bounced (Postfix maps it to 5.2.0), nothing stored
    small, big = token_of("fits"), token_of("over-quota")
    qid = pf.send([carol], message(small, carol))
    pf.wait_for(qid, carol, "sent")
    qid = pf.send([carol], message(big, carol, BODY * 3))
    dsn, text = pf.wait_for(qid, carol, "bounced")
    assert dsn.startswith("5.2.") and "quota" in text, (dsn, text)
    msgs = fetch_all(t, "carol", "pw")
    assert len(with_token(msgs, small)) == 1 and not with_token(msgs, big)

    # one message to several recipients of one destination: with
    # tpops_destination_recipient_limit = 1, one tpops-store run each
    # (and the pipe's h and u flags fold the address that tpops-store gets)
    token = token_of("multi")
    rcpts = [alice, f"Dave@{VIRTUAL.upper()}", bob]
    sent = message(token, ", ".join(rcpts))
    qid = pf.send(rcpts, sent)
    for (login, password), rcpt in zip((("alice", "secret"), ("dave", "pw"), ("bob", "pw")), rcpts):
        pf.wait_for(qid, rcpt, "sent")
        assert len(pf.statuses(qid, rcpt)) == 1
        assert_delivered_once(t, login, password, token, sent, rcpt)

    # the store down: exit 75, Postfix defers and keeps the message; back
    # up and the queue flushed, it arrives, once
    token = token_of("deferred")
    sent = message(token, alice)
    with store_down(t, backend):
        qid = pf.send([alice], sent)
        dsn, text = pf.wait_for(qid, alice, "deferred")
        assert dsn == "4.3.0" and "temporary failure" in text, (dsn, text)
        assert qid in pf.queued()
    pf.flush()
    pf.wait_for(qid, alice, "sent")
    pf.sent_once(qid, alice)
    assert_delivered_once(t, "alice", "secret", token, sent, alice)

    # tpops.conf unreadable for the pipe's user: exit 78, which Postfix
    # would bounce (5.3.5); tpops-store's "4.3.5" output makes it defer
    token = token_of("config")
    sent = message(token, alice)
    os.chmod(t.conf, 0o600)
    try:
        qid = pf.send([alice], sent)
        dsn, text = pf.wait_for(qid, alice, "deferred")
        assert dsn == "4.3.5" and t.conf in text, (dsn, text)
    finally:
        os.chmod(t.conf, 0o644)
    pf.flush()
    pf.wait_for(qid, alice, "sent")
    pf.sent_once(qid, alice)
    assert_delivered_once(t, "alice", "secret", token, sent, alice)

    pf.wait_queue_empty()
    t.assert_alive()


def test_postfix_virtual_maildir_served_by_tpops(make_tpops, postfix_for):
    """Postfix's own virtual(8) agent writes the Maildir (LF line ends,
    files owned by the uid of virtual_uid_maps: tpops's User); tpops serves
    it with `Mailbox: Maildir`, MaildirRoot = virtual_mailbox_base and
    user.maildir = the virtual_mailbox_maps value, without the seed's patch."""
    t = make_tpops(backend="maildir")
    root = maildir_backend.maildir_root(t)
    rcpt = "erin@vmail.test"
    t.tool("tpops-useradd", "erin", "pw", rcpt, "vmail.test/erin/")
    t.start()
    uid, gid = pwd.getpwnam(RUN_USER).pw_uid, pwd.getpwnam(RUN_USER).pw_gid
    pf = postfix_for(t, files={"vmailbox": f"{rcpt} vmail.test/erin/\n"},
                     virtual_mailbox_domains="vmail.test", virtual_transport="virtual",
                     virtual_mailbox_base=root, virtual_mailbox_maps="texthash:{config}/vmailbox",
                     virtual_uid_maps=f"static:{uid}", virtual_gid_maps=f"static:{gid}")
    # a Postfix lookup decides who exists: unknown users are refused at once
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail(SENDER)
        code, reply = s.rcpt("nosuchuser@vmail.test")
        assert code == 550 and b"5.1.1" in reply and b"nknown" in reply, reply

    token = token_of("virtual")
    sent = message(token, rcpt)
    qid = pf.send([rcpt], sent)
    pf.wait_for(qid, rcpt, "sent")
    new = os.path.join(root, "vmail.test", "erin", "new")
    files = os.listdir(new)
    assert len(files) == 1, files
    with open(os.path.join(new, files[0]), "rb") as f:
        on_disk = f.read()
    assert b"\r\n" not in on_disk and on_disk.endswith(sent.replace(b"\r\n", b"\n"))
    assert os.stat(os.path.join(new, files[0])).st_uid == uid
    assert_delivered_once(t, "erin", "pw", token, sent, rcpt)


def test_postfix_delivers_over_lmtp(make_tpops, backend, postfix_for):
    """docs/POSTFIX.md's LMTP setup with each store: `virtual_transport =
    lmtp:unix:` the daemon's LMTP_Listen socket. Delivered octet for octet
    and once; an unknown user bounced 5.1.1 and an over-quota message
    bounced 5.2.2 (both at RCPT: Postfix sends SIZE); the store down
    deferred, then delivered once; one message to several users delivered
    once to each over one connection."""
    t = make_tpops(backend=backend)
    socket_path = os.path.join(t.dir, "lmtp")
    t.write_config(LMTP_Listen=socket_path)
    alice = t.add_user("alice", "secret", f"alice@{VIRTUAL}")
    carol = t.add_user("carol", "pw", f"carol@{VIRTUAL}", "--quota", "4000")
    t.add_user("dave", "pw", f"dave@{VIRTUAL}")
    t.add_user("erin", "pw", f"erin@{VIRTUAL}")
    t.start()
    pf = postfix_for(t, virtual_transport=f"lmtp:unix:{socket_path}")

    token = token_of("lmtp")
    sent = message(token, alice)
    qid = pf.send([alice], sent)
    dsn, text = pf.wait_for(qid, alice, "sent")
    assert dsn == "2.0.0" and "2.0.0 <alice@" in text, text
    assert_delivered_once(t, "alice", "secret", token, sent, alice)

    unknown = f"nosuchuser@{VIRTUAL}"
    qid = pf.send([unknown], message(token_of("unknown"), unknown))
    dsn, text = pf.wait_for(qid, unknown, "bounced")
    assert dsn == "5.1.1" and "user unknown" in text.lower(), (dsn, text)

    small, big = token_of("fits"), token_of("over-quota")
    qid = pf.send([carol], message(small, carol))
    pf.wait_for(qid, carol, "sent")
    qid = pf.send([carol], message(big, carol, BODY * 3))
    dsn, text = pf.wait_for(qid, carol, "bounced")
    assert dsn == "5.2.2" and "quota" in text, (dsn, text)
    msgs = fetch_all(t, "carol", "pw")
    assert len(with_token(msgs, small)) == 1 and not with_token(msgs, big)

    # several recipients, one of them in capitals: one LMTP transaction,
    # one reply and one copy each
    token = token_of("multi")
    rcpts = [alice, f"Dave@{VIRTUAL.upper()}", f"erin@{VIRTUAL}"]
    sent = message(token, ", ".join(rcpts))
    qid = pf.send(rcpts, sent)
    for (login, password), rcpt in zip((("alice", "secret"), ("dave", "pw"), ("erin", "pw")), rcpts):
        pf.wait_for(qid, rcpt, "sent")
        pf.sent_once(qid, rcpt)
        assert_delivered_once(t, login, password, token, sent, rcpt)

    token = token_of("deferred")
    sent = message(token, alice)
    with store_down(t, backend):
        qid = pf.send([alice], sent)
        dsn, text = pf.wait_for(qid, alice, "deferred")
        assert dsn == "4.3.0" and "Temporary failure" in text, (dsn, text)
        assert qid in pf.queued()
    pf.flush()
    pf.wait_for(qid, alice, "sent")
    pf.sent_once(qid, alice)
    assert_delivered_once(t, "alice", "secret", token, sent, alice)

    pf.wait_queue_empty()
    t.assert_alive()
