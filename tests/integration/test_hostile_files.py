"""Hostile files in a Maildir: a FIFO, a directory, a socket or a device
node swapped in for a message file after login. No thread may wait on
one: RETR and TOP answer -ERR at once, every other session on every I/O
thread keeps being served, and SIGTERM still stops the daemon. Over TLS
too: there a message that fits in one piece is read on the I/O thread as
well (pop3_stream.c)."""
import os
import socket
import stat
import time

import pytest

from conftest import IS_ROOT, Client
from pop3tls import HOST, Pop3, cert, client_context, tls_settings  # noqa: F401

IO_THREADS = 3


def maildir_new(t, login):
    return os.path.join(t.dir, "maildirs", login, "new")


def swap(path, kind, keep):
    """Replaces the file at path by a node of that kind."""
    os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path, 0o666)
    elif kind == "directory":
        os.mkdir(path, 0o777)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(1)
        keep.append(s)  # bound and listening: a connect would be accepted
    elif kind == "device":
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    else:
        raise ValueError(kind)


KINDS = ["fifo", "directory", "socket"] + (["device"] if IS_ROOT else [])


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "pop3s"])
def test_hostile_files_are_refused_at_once(make_tpops, client_for, cert, tls):
    t = make_tpops(backend="maildir", IOThreads=IO_THREADS, Workers=2, CommandTimeout=60,
                   **tls_settings(cert))
    t.add_user("alice", "secret")
    t.add_user("bob", "pw")
    for i, kind in enumerate(KINDS):
        t.store("alice@example.com", b"Subject: %s\n\nbody %d\n" % (kind.encode(), i))
    t.store("alice@example.com", b"Subject: fine\n\nstill served\n")
    t.store("bob@example.com", b"Subject: bob\n\nbody\n")
    others = [f"other{i}" for i in range(2 * IO_THREADS)]
    for login in others:
        t.add_user(login, "pw")
        t.store(f"{login}@example.com", b"Subject: other\n\nbody\n")
    t.start()
    if tls:
        alice = Pop3(t.settings["TLS_Port"], tls=client_context(cert))
        assert alice.login("alice", "secret").startswith(b"+OK")
    else:
        alice = client_for(t)
        alice.login()
    alice.send(b"UIDL\r\n")
    assert alice.line().startswith(b"+OK")
    uidls = [line.split()[1].decode() for line in alice.multiline()]
    new = maildir_new(t, "alice")
    keep = []
    for n, kind in enumerate(KINDS):
        name = next(f for f in os.listdir(new) if f.startswith(uidls[n]))
        swap(os.path.join(new, name), kind, keep)
    # others, logged in, on every I/O thread (tpops-admin who says which
    # thread serves each; it asks every thread, so it answers only if none
    # is stuck): more sessions than threads
    sessions = []
    for login in others:
        c = client_for(t)
        c.login(login, "pw")
        sessions.append(c)
    r = t.tool("tpops-admin", "who")
    threads = {line.split()[-1] for line in r.stdout.decode().splitlines()[2:]
               if line.split()[0] in others}
    assert threads == {str(i) for i in range(IO_THREADS)}, r.stdout
    for n, kind in enumerate(KINDS, start=1):
        for command in (b"RETR %d" % n, b"TOP %d 0" % n):
            start = time.monotonic()
            reply = alice.cmd(command)
            took = time.monotonic() - start
            assert reply.startswith(b"-ERR"), (kind, command, reply)
            assert took < 5, (kind, command, took)
            for c in sessions:  # every other session is served meanwhile
                assert c.cmd(b"STAT").startswith(b"+OK 1 "), kind
            assert t.tool("tpops-admin", "who").returncode == 0, kind
    # the session goes on: the regular message is served whole
    assert alice.cmd(b"RETR %d" % (len(KINDS) + 1)).startswith(b"+OK")
    assert b"still served" in b"\n".join(alice.multiline())
    bob = client_for(t)
    bob.login("bob", "pw")
    assert bob.cmd(b"RETR 1").startswith(b"+OK")
    bob.multiline()
    assert "not a regular file" in t.read_log()
    # SIGTERM still stops it, with RETR and TOP of each of them just asked
    # for (not yet answered)
    for n in range(1, len(KINDS) + 1):
        alice.send(b"RETR %d\r\nTOP %d 0\r\n" % (n, n))
    start = time.monotonic()
    rc = t.stop()
    assert time.monotonic() - start < 10, "SIGTERM did not stop the daemon within 10 s"
    assert rc == 0, rc
    for s in keep:
        s.close()
