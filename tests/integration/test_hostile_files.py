"""Hostile files in a Maildir: a FIFO, a directory, a socket or a device
node swapped in for a message file after login. No thread may wait on
one: RETR and TOP answer -ERR at once, every other session on every I/O
thread keeps being served, and SIGTERM still stops the daemon."""
import os
import socket
import stat
import time

import pytest

from conftest import IS_ROOT, Client

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


def test_hostile_files_are_refused_at_once(make_tpops, client_for):
    t = make_tpops(backend="maildir", IOThreads=IO_THREADS, Workers=2, CommandTimeout=60)
    t.add_user("alice", "secret")
    t.add_user("bob", "pw")
    for i, kind in enumerate(KINDS):
        t.store("alice@example.com", b"Subject: %s\n\nbody %d\n" % (kind.encode(), i))
    t.store("alice@example.com", b"Subject: fine\n\nstill served\n")
    t.store("bob@example.com", b"Subject: bob\n\nbody\n")
    t.start()
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
    # others on every I/O thread: more sessions than threads
    others = [client_for(t) for _ in range(2 * IO_THREADS)]
    for n, kind in enumerate(KINDS, start=1):
        for command in (b"RETR %d" % n, b"TOP %d 0" % n):
            start = time.monotonic()
            reply = alice.cmd(command)
            took = time.monotonic() - start
            assert reply.startswith(b"-ERR"), (kind, command, reply)
            assert took < 5, (kind, command, took)
            for c in others:  # every other session answers meanwhile
                assert c.cmd(b"USER someone").startswith(b"+OK"), kind
    # the session goes on: the regular message is served whole
    assert alice.cmd(b"RETR %d" % (len(KINDS) + 1)).startswith(b"+OK")
    assert b"still served" in b"\n".join(alice.multiline())
    bob = client_for(t)
    bob.login("bob", "pw")
    assert bob.cmd(b"RETR 1").startswith(b"+OK")
    bob.multiline()
    assert "not a regular file" in t.read_log()
    # a new login lists them and serves the rest; SIGTERM still stops it
    alice.cmd(b"QUIT")
    again = client_for(t)
    again.login()
    start = time.monotonic()
    rc = t.stop()
    assert time.monotonic() - start < 10, "SIGTERM did not stop the daemon within 10 s"
    assert rc == 0, rc
    for s in keep:
        s.close()
