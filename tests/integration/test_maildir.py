"""Maildir maildrops (Mailbox: Maildir), on real files: files dropped in
by other programs (LF or CRLF, with or without size fields, odd names),
changes behind tpops's back during a session, what QUIT does to the files,
refused paths, and delivery with tpops-store (durable, full disk, quota).
The protocol suite in the other files runs against Maildir as well (the
"maildir" backend in backends/maildir.py)."""
import ctypes
import mmap
import os
import re
import resource
import shutil
import subprocess
import time

import pytest

from conftest import IS_ROOT, TOOL_ASAN, Client, program

PASSWORD = "secret"


def wire(msg):
    """What RETR sends before dot-stuffing, and what STAT/LIST count."""
    out = re.sub(rb"\r?\n", b"\r\n", msg)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def maildir(t, login="alice"):
    return os.path.join(t.dir, "maildirs", login)


def give_to_run_user(t, path):
    if "User" in t.settings:
        shutil.chown(path, t.settings["User"], t.settings.get("Group"))


def drop(t, sub, name, data, login="alice", mode=0o600):
    """Puts a file into new/ or cur/ as another deliverer would."""
    path = os.path.join(maildir(t, login), sub, name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    give_to_run_user(t, path)
    return path


def files(t, sub, login="alice"):
    return sorted(os.listdir(os.path.join(maildir(t, login), sub)))


@pytest.fixture
def md(make_tpops):
    """An installation on Maildir (not started), with user alice."""
    t = make_tpops(backend="maildir", LogLevel="debug")
    t.add_user("alice", PASSWORD)
    return t


def login(t, user="alice", deadline=15):
    """Logs in as soon as the maildrop is free (a session that just ended
    may still be releasing its lock)."""
    end = time.time() + deadline
    while True:
        c = Client(t.port, timeout=120)
        assert c.cmd(f"USER {user}").startswith(b"+OK")
        reply = c.cmd(f"PASS {PASSWORD}")
        if reply.startswith(b"+OK"):
            return c
        c.close()
        assert reply.startswith(b"-ERR [IN-USE]") and time.time() < end, reply
        time.sleep(0.05)


def listing(c, command):
    status = c.cmd(command)
    assert status.startswith(b"+OK"), status
    return [tuple(line.split(b" ")) for line in c.multiline()]


def retr(c, n):
    status = c.cmd(f"RETR {n}")
    assert status.startswith(b"+OK"), status
    return b"".join(line + b"\r\n" for line in c.multiline())


def valid_uidl(u):
    return 1 <= len(u) <= 70 and all(0x21 <= b <= 0x7e for b in u)


LF_MSG = b"From: a@example.com\nSubject: lf\n\nline one\n.dot line\n\xe4\xf6 8-bit\nno end"
CRLF_MSG = b"From: b@example.com\r\nSubject: crlf\r\n\r\nbody\r\n.\r\n"


# -- files dropped in by other programs --

def test_lf_and_crlf_files_served_with_crlf_and_exact_sizes(md):
    """Postfix's local(8) writes LF: sizes and bytes are those of CRLF."""
    drop(md, "new", "1600000001.M1P1Q1.other", LF_MSG)
    drop(md, "cur", "1600000002.M1P1Q1.other:2,S", CRLF_MSG)
    # Dovecot-style size fields are believed without reading the file
    drop(md, "new", f"1600000003.M1P1Q1.other,S={len(LF_MSG)},W={len(wire(LF_MSG))}", LF_MSG)
    md.start()
    c = login(md)
    expect = [wire(LF_MSG), wire(CRLF_MSG), wire(LF_MSG)]
    assert c.cmd("STAT") == b"+OK 3 %d" % sum(map(len, expect))
    assert listing(c, "LIST") == [(b"%d" % i, b"%d" % len(m)) for i, m in enumerate(expect, 1)]
    for i, m in enumerate(expect, 1):
        assert retr(c, i) == m
    assert c.cmd("QUIT").startswith(b"+OK")


def test_arrival_order(md):
    """Ordered by the time in the name, then the rest with numbers compared
    as numbers (M99 before M100), whatever the directory."""
    names = [("cur", "999999999.M5P1Q1.h:2,S"),
             ("new", "1000000000.M99P1Q1.h"),
             ("cur", "1000000000.M100P1Q1.h:2,"),
             ("new", "1000000000.M100P1Q2.h"),
             ("new", "1000000001.M0P1Q1.h")]
    for i, (sub, name) in enumerate(names):
        drop(md, sub, name, b"Subject: %d\n\n" % i)
    md.start()
    c = login(md)
    uidls = [u for _, u in listing(c, "UIDL")]
    assert uidls == [n.split(":")[0].encode() for _, n in names]
    for i in range(len(names)):
        assert c.cmd(f"TOP {i + 1} 0").startswith(b"+OK")
        assert c.multiline()[0] == b"Subject: %d" % i


def test_sizes_measured_once_then_cached(md):
    """Without size fields the first login reads each file once; the
    second reads no message file at all: files the daemon cannot read any
    more are still listed with their right sizes."""
    msgs = [b"Subject: %d\n\n" % i + b"x\n" * i for i in range(1, 6)]
    paths = [drop(md, "new" if i % 2 else "cur", f"16000000{i:02d}.M0P1Q1.h" + ("" if i % 2 else ":2,"),
                  m, mode=0o644) for i, m in enumerate(msgs)]
    md.start()
    c = login(md)
    first = listing(c, "LIST")
    assert first == [(b"%d" % i, b"%d" % len(wire(m))) for i, m in enumerate(msgs, 1)]
    uidls = listing(c, "UIDL")
    assert c.cmd("QUIT").startswith(b"+OK")
    cache = open(os.path.join(maildir(md), "tpops-sizes"), "rb").read().split(b"\n")
    assert cache[0] == b"tpops-sizes 1" and cache[-2] == b"end 5" and cache[-1] == b""
    assert sorted(cache[1:-2]) == sorted(b"%d %d %s" % (len(wire(m)), len(m), os.path.basename(p).split(":")[0].encode())
                                         for m, p in zip(msgs, paths))
    assert "measured 5" in md.read_log()
    for p in paths:
        os.chmod(p, 0)   # the daemon runs as another user (nobody)
    c = login(md)
    assert listing(c, "LIST") == first
    assert listing(c, "UIDL") == uidls
    assert re.search(r"from the cache 5, measured 0", md.read_log())
    if IS_ROOT:   # now RETR cannot open it: a temporary error, the session goes on
        assert c.cmd("RETR 1").startswith(b"-ERR [SYS/TEMP]")
        assert c.cmd("NOOP") == b"+OK"
    assert c.cmd("QUIT").startswith(b"+OK")


def test_cache_pruned_and_extended(md):
    drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: 1\n\n")
    gone = drop(md, "new", "1600000002.M0P1Q1.h", b"Subject: 2\n\n")
    md.start()
    c = login(md)
    assert c.cmd("QUIT").startswith(b"+OK")
    os.unlink(gone)
    drop(md, "new", "1600000003.M0P1Q1.h", b"Subject: 3\n\nbody\n")
    c = login(md)
    assert c.cmd("STAT") == b"+OK 2 %d" % (len(b"Subject: 1\r\n\r\n") + len(b"Subject: 3\r\n\r\nbody\r\n"))
    assert c.cmd("QUIT").startswith(b"+OK")
    cache = open(os.path.join(maildir(md), "tpops-sizes"), "rb").read()
    assert b"1600000002" not in cache
    assert b"1600000003.M0P1Q1.h" in cache and b"end 2\n" in cache


def test_damaged_cache_is_ignored(md):
    drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: 1\n\nbody\n")
    md.start()
    c = login(md)
    c.cmd("QUIT")
    path = os.path.join(maildir(md), "tpops-sizes")
    text = open(path, "rb").read()
    with open(path, "wb") as f:   # cut short, and a wrong size in it
        f.write(text.replace(b" ", b"9 ", 1).split(b"end")[0])
    c = login(md)
    assert c.cmd("LIST 1") == b"+OK 1 %d" % len(b"Subject: 1\r\n\r\nbody\r\n")
    c.cmd("QUIT")


# -- the listing cache (tpops-index) --

FROM_INDEX = "from the listing cache"


def age_dirs(t, login="alice", seconds=10):
    """Sets the mtimes of new/ and cur/ back: directories that changed less
    than a second before the listing are not cached (a change in the same
    timestamp tick would go unseen)."""
    past = time.time() - seconds
    for sub in ("new", "cur"):
        os.utime(os.path.join(maildir(t, login), sub), (past, past))


def snapshot(c):
    """Everything a client can see of the listing, and every message (with
    TOP, which does not mark it as seen: QUIT changes no directory)."""
    stat = c.cmd("STAT")
    lst, uidl = listing(c, "LIST"), listing(c, "UIDL")
    tops = []
    for i in range(1, len(lst) + 1):
        assert c.cmd(f"TOP {i} 1000").startswith(b"+OK")
        tops.append(c.multiline())
    return stat, lst, uidl, tops


def index_logins(t):
    return t.read_log().count(FROM_INDEX)


def test_second_login_from_listing_cache_equals_fresh_listing(md):
    long_name = "1600000004.M0P1Q1." + "h" * 80
    drop(md, "new", "1600000001.M0P1Q1.h", LF_MSG)
    drop(md, "cur", "1600000002.M1P1Q1.h:2,S", CRLF_MSG)
    w3 = f"1600000003.M1P1Q1.h,S={len(LF_MSG)},W={len(wire(LF_MSG))}"
    drop(md, "new", w3, LF_MSG)
    drop(md, "cur", long_name + ":2,F", b"Subject: long\n\n")
    drop(md, "new", "1000000000.M99P1Q1.h", b"Subject: older\n\n")
    drop(md, "new", ".hidden", b"not a message")
    expect = [b"Subject: older\n\n", LF_MSG, CRLF_MSG, LF_MSG, b"Subject: long\n\n"]
    age_dirs(md)
    md.start()
    c = login(md)
    fresh = snapshot(c)
    assert c.cmd("QUIT").startswith(b"+OK")
    assert index_logins(md) == 0
    assert os.path.exists(os.path.join(maildir(md), "tpops-index"))
    assert fresh[0] == b"+OK 5 %d" % sum(len(wire(m)) for m in expect)

    c = login(md)                     # from the cache
    assert snapshot(c) == fresh
    assert index_logins(md) == 1
    assert [retr(c, i) for i in range(1, 6)] == [wire(m) for m in expect]
    assert c.cmd("DELE 2").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")
    # QUIT acted on the cached names: 2 gone, the rest seen in cur/
    assert files(md, "new") == [".hidden"]
    assert files(md, "cur") == ["1000000000.M99P1Q1.h:2,S", "1600000002.M1P1Q1.h:2,S",
                                w3 + ":2,S", long_name + ":2,FS"]
    c = login(md)                     # QUIT changed new/ and cur/: listed again
    after = snapshot(c)
    assert index_logins(md) == 1
    assert after[0] == b"+OK 4 %d" % (sum(len(wire(m)) for m in expect) - len(wire(LF_MSG)))
    assert after[2] == [(b"%d" % i, u) for i, (_, u) in enumerate(fresh[2][:1] + fresh[2][2:], 1)]
    c.cmd("QUIT")


def test_listing_cache_while_another_client_moves_files(md):
    """A file moved from new/ to cur/ by another client during a session
    served from the cache is found again (the cached names are replaced)."""
    a = drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: a\n\n")
    drop(md, "new", "1600000002.M0P1Q1.h", b"Subject: b\n\n")
    age_dirs(md)
    md.start()
    login(md).cmd("QUIT")
    c = login(md)
    assert index_logins(md) == 1
    os.rename(a, os.path.join(maildir(md), "cur", "1600000001.M0P1Q1.h:2,F"))
    assert retr(c, 1) == b"Subject: a\r\n\r\n"
    assert retr(c, 2) == b"Subject: b\r\n\r\n"
    assert c.cmd("QUIT").startswith(b"+OK")
    assert files(md, "new") == []
    assert files(md, "cur") == ["1600000001.M0P1Q1.h:2,FS", "1600000002.M0P1Q1.h:2,S"]


def _deliver(t):
    drop(t, "new", "1600000009.M0P1Q1.h", b"Subject: new\n\n")


def _store(t):
    assert t.store("alice@example.com", b"Subject: stored\n\n") == 0


def _remove(t):
    os.unlink(os.path.join(maildir(t), "new", "1600000001.M0P1Q1.h"))


def _move(t):
    os.rename(os.path.join(maildir(t), "new", "1600000001.M0P1Q1.h"),
              os.path.join(maildir(t), "cur", "1600000001.M0P1Q1.h:2,S"))


def _flag(t):
    os.rename(os.path.join(maildir(t), "cur", "1600000002.M0P1Q1.h:2,"),
              os.path.join(maildir(t), "cur", "1600000002.M0P1Q1.h:2,F"))


def _replace_same_name(t):
    """Removed and delivered again under another name, with the directory's
    mtime set back to what it was: the ctime still tells."""
    path = os.path.join(maildir(t), "new")
    st = os.stat(path)
    os.unlink(os.path.join(path, "1600000001.M0P1Q1.h"))
    drop(t, "new", "1600000001.M0P1Q2.h", b"Subject: 1\n\nbody\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("change", [_deliver, _store, _remove, _move, _flag, _replace_same_name])
def test_change_between_logins_invalidates_listing_cache(md, change):
    drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: 1\n\nbody\n")
    drop(md, "cur", "1600000002.M0P1Q1.h:2,", b"Subject: 2\n\n")
    age_dirs(md)
    md.start()
    login(md).cmd("QUIT")              # lists, writes the cache
    c = login(md)
    cached = snapshot(c)
    c.cmd("QUIT")
    assert index_logins(md) == 1
    change(md)
    c = login(md)
    after = snapshot(c)
    c.cmd("QUIT")
    assert index_logins(md) == 1       # listed again
    for cache in ("tpops-sizes", "tpops-index"):
        if os.path.exists(os.path.join(maildir(md), cache)):
            os.unlink(os.path.join(maildir(md), cache))
    c = login(md)
    assert snapshot(c) == after        # what a fresh listing gives
    c.cmd("QUIT")
    if change in (_move, _flag):
        assert after == cached         # the same messages, under other names
    elif change is _replace_same_name:
        assert after[2] != cached[2]   # another UIDL
    else:
        assert after[0] != cached[0]


def test_damaged_listing_cache_is_ignored(md):
    drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: 1\n\nbody\n")
    drop(md, "cur", "1600000002.M0P1Q1.h,S=5,W=7:2,S", b"abc\nd")
    age_dirs(md)
    md.start()
    c = login(md)
    fresh = snapshot(c)
    c.cmd("QUIT")
    path = os.path.join(maildir(md), "tpops-index")
    good = open(path, "rb").read()
    header = 184
    damaged = [
        good[:header] + bytes([good[header] ^ 1]) + good[header + 1:],   # a size
        good[:-1] + b"X",                                                  # a name
        good[:-1],                                                         # cut short
        good + b"\0",                                                      # too long
        good[:header],
        b"",
        b"tpopsidx" + b"\0" * 300,
    ]
    for i, data in enumerate(damaged):
        with open(path, "wb") as f:
            f.write(data)
        give_to_run_user(md, path)
        c = login(md)
        assert snapshot(c) == fresh, i
        c.cmd("QUIT")
        assert index_logins(md) == 0, i
    # rewritten whole by the last of those logins: believed again
    assert open(path, "rb").read()[header:] == good[header:]
    c = login(md)
    assert snapshot(c) == fresh
    c.cmd("QUIT")
    assert index_logins(md) == 1


def test_recently_changed_directories_are_not_cached(md):
    """A directory whose mtime is within a second of the listing may still
    change in the same timestamp tick: no cache is written."""
    drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: 1\n\n")
    md.start()
    login(md).cmd("QUIT")
    login(md).cmd("QUIT")
    assert index_logins(md) == 0
    assert not os.path.exists(os.path.join(maildir(md), "tpops-index"))


# -- changes behind tpops's back --

def test_file_deleted_during_session(md):
    a = drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: a\n\na\n")
    drop(md, "new", "1600000002.M0P1Q1.h", b"Subject: b\n\nb\n")
    md.start()
    c = login(md)
    os.unlink(a)   # another POP3 or IMAP client deleted it
    assert c.cmd("RETR 1") == b"-ERR Message 1 is gone"
    assert c.cmd("NOOP") == b"+OK"
    assert retr(c, 2) == b"Subject: b\r\n\r\nb\r\n"
    assert c.cmd("DELE 1").startswith(b"+OK")   # a file already gone is fine
    assert c.cmd("QUIT").startswith(b"+OK")
    assert files(md, "new") == [] and files(md, "cur") == ["1600000002.M0P1Q1.h:2,S"]


def test_file_moved_or_flagged_by_another_client(md):
    """An IMAP server moved one to cur/ and flagged another: RETR finds them
    by their unique name; UIDLs do not change; QUIT acts on the new names."""
    a = drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: a\n\n")
    b = drop(md, "cur", "1600000002.M0P1Q1.h:2,", b"Subject: b\n\n")
    md.start()
    c = login(md)
    uidls = listing(c, "UIDL")
    os.rename(a, os.path.join(maildir(md), "cur", "1600000001.M0P1Q1.h:2,F"))
    os.rename(b, os.path.join(maildir(md), "cur", "1600000002.M0P1Q1.h:2,R"))
    assert retr(c, 1) == b"Subject: a\r\n\r\n"
    assert retr(c, 2) == b"Subject: b\r\n\r\n"
    assert listing(c, "UIDL") == uidls
    assert c.cmd("DELE 2").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")
    assert files(md, "cur") == ["1600000001.M0P1Q1.h:2,FS"]


def pages_in_memory(path):
    """How many of the file's pages are in the page cache (mincore(2) of a
    mapping, which itself reads nothing)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = os.path.getsize(path)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        vec = (ctypes.c_ubyte * pages)()
        assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
        libc.munmap(addr, size)
        return sum(v & 1 for v in vec)
    finally:
        os.close(fd)


def evict_from_page_cache(path):
    """Drops the file's pages from the page cache; False where the
    filesystem keeps them anyway (tmpfs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return pages_in_memory(path) == 0


def test_retr_from_memory_and_from_disk(md):
    """Pieces in the page cache are read on the I/O thread; the others on
    a storage worker. Both give the same bytes, also when a message of
    several pieces (256 KiB each) is partly in memory.

    Which pages are in memory is set up, and checked with mincore(2),
    before each round; on a loaded machine the kernel may still evict or
    read ahead between that check and the daemon's read, so a round whose
    log does not match is tried again (three rounds at most). A daemon
    that read everything on one side would fail every round."""
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .-\n"
    body = b"".join(b".%d " % i + line for i in range(12000))   # ~850 KiB, LF
    msgs = [b"Subject: big\n\n" + body, CRLF_MSG, LF_MSG]
    paths = [drop(md, "new", f"160000000{i}.M1P1Q1.h", m) for i, m in enumerate(msgs, 1)]
    md.start()
    c = login(md)

    def round_log(prepare):
        prepare()
        mark = len(md.read_log())
        for i, m in enumerate(msgs, 1):
            assert retr(c, i) == wire(m)  # the same bytes, whatever happened
        return md.read_log()[mark:]

    def all_in_memory():
        for p in paths:
            with open(p, "rb") as f:
                f.read()
        assert all(pages_in_memory(p) > 0 for p in paths)

    for attempt in range(3):   # just written, or read again: in memory
        log = round_log(all_in_memory)
        if "not in memory" not in log:
            break
    else:
        raise AssertionError("read on a worker although in memory:\n" + log)

    if not all(evict_from_page_cache(p) for p in paths):
        pytest.skip("the filesystem of the test directory keeps files in memory")

    def first_piece_only():
        for p in paths:
            assert evict_from_page_cache(p), p
        with open(paths[0], "rb") as f:   # the first piece back, and no more
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
            f.read(300 * 1024)
        assert pages_in_memory(paths[1]) == 0 and pages_in_memory(paths[2]) == 0

    expected = ["message 1 from octet 262144 is not in memory: read on a storage worker",
                "message 2 from octet 0 is not in memory",
                "message 3 from octet 0 is not in memory"]
    for attempt in range(3):
        log = round_log(first_piece_only)
        if all(e in log for e in expected):
            break
    else:
        raise AssertionError(f"{expected} not all in the log:\n{log}")
    assert c.cmd("QUIT").startswith(b"+OK")


def test_new_file_during_session_shows_at_next_login(md):
    drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: a\n\n")
    md.start()
    c = login(md)
    assert c.cmd("STAT").startswith(b"+OK 1 ")
    md.store("alice@example.com", b"Subject: new\n\n")
    drop(md, "new", "1500000000.M0P1Q1.h", b"Subject: older name\n\n")
    assert c.cmd("STAT").startswith(b"+OK 1 ")
    assert len(listing(c, "UIDL")) == 1
    assert c.cmd("LIST 2") == b"-ERR No such message"
    assert c.cmd("QUIT").startswith(b"+OK")
    c = login(md)
    assert c.cmd("STAT").startswith(b"+OK 3 ")
    c.cmd("QUIT")


# -- names --

def test_long_and_odd_names_get_stable_valid_uidls(md):
    long_name = "1600000001.M0P1Q1." + "h" * 80 + ",S=14"
    odd = ["1600000002.M0P1Q1.with space", "1600000003.M0P1Q1.\u00e9t\u00e9",
           "1600000004.M0P1Q1.tab\there", "1600000005.M0P1Q1.fine"]
    for name in [long_name] + odd:
        drop(md, "new", name, b"Subject: x\n\n")
    md.start()
    c = login(md)
    first = [u for _, u in listing(c, "UIDL")]
    assert len(first) == 5 and len(set(first)) == 5
    assert all(valid_uidl(u) for u in first)
    assert first[4] == b"1600000005.M0P1Q1.fine"   # a valid name is its own UIDL
    for i in range(1, 6):
        retr(c, i)
    assert c.cmd("QUIT").startswith(b"+OK")
    assert files(md, "new") == []
    assert len(files(md, "cur")) == 5 and all(f.endswith(":2,S") for f in files(md, "cur"))
    c = login(md)
    assert [u for _, u in listing(c, "UIDL")] == first
    assert c.cmd("UIDL 1") == b"+OK 1 " + first[0]
    c.cmd("QUIT")


# -- what QUIT does, and only QUIT --

def test_retrieved_moves_to_cur_seen_at_quit_only(md):
    drop(md, "new", "1600000001.M0P1Q1.h", b"Subject: 1\n\n")
    drop(md, "cur", "1600000002.M0P1Q1.h:2,RT", b"Subject: 2\n\n")
    drop(md, "cur", "1600000003.M0P1Q1.h:2,S", b"Subject: 3\n\n")
    drop(md, "new", "1600000004.M0P1Q1.h", b"Subject: 4\n\n")
    drop(md, "cur", "1600000005.M0P1Q1.h:2,Fa", b"Subject: 5\n\n")
    md.start()
    c = login(md)
    for i in (1, 2, 3, 5):
        retr(c, i)
    assert c.cmd("TOP 4 0").startswith(b"+OK")   # TOP is not reading it
    c.multiline()
    assert files(md, "new") == ["1600000001.M0P1Q1.h", "1600000004.M0P1Q1.h"]
    assert c.cmd("QUIT").startswith(b"+OK")
    assert files(md, "new") == ["1600000004.M0P1Q1.h"]
    assert files(md, "cur") == ["1600000001.M0P1Q1.h:2,S", "1600000002.M0P1Q1.h:2,RST",
                                "1600000003.M0P1Q1.h:2,S", "1600000005.M0P1Q1.h:2,FSa"]


def test_dele_unlinks_only_at_quit_and_a_drop_changes_nothing(md):
    for i in range(1, 4):
        drop(md, "new", f"160000000{i}.M0P1Q1.h", b"Subject: %d\n\n" % i)
    md.start()
    before = files(md, "new")
    # dropped connection after DELE and RETR: nothing happens
    c = login(md)
    assert c.cmd("DELE 1").startswith(b"+OK")
    retr(c, 2)
    assert files(md, "new") == before
    c.sock.close()
    time.sleep(0.3)
    assert files(md, "new") == before and files(md, "cur") == []
    # RSET undoes; QUIT applies what is left
    c = login(md)
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("RSET").startswith(b"+OK")
    assert c.cmd("DELE 3").startswith(b"+OK")
    assert files(md, "new") == before
    assert c.cmd("QUIT").startswith(b"+OK")
    assert files(md, "new") == before[:2] and files(md, "cur") == []


# -- paths that must not be served --

def add_user_with_maildir(t, login, path):
    t.tool("tpops-useradd", login, PASSWORD, f"{login}@example.com", path)


def add_user_row(t, login, path):
    """A user whose Maildir path tpops-useradd would refuse (a database of
    the original TPOPS, an edit by hand): the row is written directly."""
    t.sql('INSERT INTO "user" (login, passwd, mail, maildir) '
          'SELECT ?, passwd, ?, ? FROM "user" WHERE login = ?',
          (login, f"{login}@example.com", path, "alice"))


def make_maildir_at(t, path):
    for sub in ("", "tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
        give_to_run_user(t, os.path.join(path, sub))


def test_paths_that_escape_or_are_missing_are_refused(md):
    root = os.path.join(md.dir, "maildirs")
    outside = os.path.join(md.dir, "outside")
    make_maildir_at(md, outside)
    open(os.path.join(outside, "new", "1600000001.M0P1Q1.h"), "wb").write(b"Subject: secret\n\n")
    os.symlink(outside, os.path.join(root, "abs-link"))
    os.symlink("../outside", os.path.join(root, "rel-link"))
    os.symlink("alice", os.path.join(root, "inside-link"))   # stays below the root: fine
    make_maildir_at(md, os.path.join(root, "newlink"))
    os.rmdir(os.path.join(root, "newlink", "new"))
    os.symlink(os.path.join(outside, "new"), os.path.join(root, "newlink", "new"))
    refused = {"dotdot": "../outside", "abs": outside, "abslink": "abs-link",
               "rellink": "rel-link/", "deep": "alice/../../outside",
               "missing": "nosuch/deeper",  # (a missing Maildir alone is made at login)
               "newlink": "newlink", "root": ".", "empty": ""}
    for user, path in refused.items():
        add_user_row(md, user, path)
    add_user_with_maildir(md, "inside", "inside-link")
    add_user_with_maildir(md, "absinside", os.path.join(root, "alice"))
    md.start()
    for user in refused:
        c = Client(md.port)
        assert c.cmd(f"USER {user}").startswith(b"+OK")
        assert c.cmd(f"PASS {PASSWORD}").startswith(b"-ERR [SYS/PERM]"), user
        c.close()
    for user in ("inside", "absinside"):
        c = login(md, user)
        assert c.cmd("STAT") == b"+OK 0 0"
        c.cmd("QUIT")
    log = md.read_log()
    assert "outside MaildirRoot" in log and '("..")' in log and "does not exist" in log
    assert "symlink" in log and "MaildirRoot itself" in log and "user.maildir is empty" in log
    # delivery is refused as well (75: the mail waits until the path is fixed)
    for user in ("dotdot", "abslink", "rellink", "newlink"):
        assert md.store(f"{user}@example.com", b"Subject: x\n\n", check=False) == 75
    assert os.listdir(os.path.join(outside, "new")) == ["1600000001.M0P1Q1.h"]


# -- delivery with tpops-store --

def test_store_names_and_syncs(md):
    msg = b"Subject: stored\n\nline\n.dot\n"
    r = subprocess.run(["strace", "-f", "-s", "512", "-o", os.path.join(md.dir, "strace.log"),
                        "-e", "trace=openat,openat2,write,fsync,close,renameat2,rename,linkat",
                        program("tpops-store"), "-c", md.conf, "alice@example.com"],
                       input=msg, capture_output=True,   # LeakSanitizer cannot run under ptrace
                       env=dict(os.environ, ASAN_OPTIONS=TOOL_ASAN.replace("detect_leaks=1", "detect_leaks=0"))) \
        if shutil.which("strace") else None
    if r is None:
        assert md.store("alice@example.com", msg) == 0
    else:
        assert r.returncode == 0, r.stderr
    names = files(md, "new")
    assert len(names) == 1 and files(md, "tmp") == []
    name = names[0]
    assert re.fullmatch(r"\d+\.M\d{6}P\d+Q\d+\.[!-~]+,S=%d,W=%d" % (len(msg), len(wire(msg))), name), name
    path = os.path.join(maildir(md), "new", name)
    assert open(path, "rb").read() == msg
    assert os.stat(path).st_mode & 0o777 == 0o600
    if r is not None:
        # the order the Maildir convention asks for: the file is synced
        # before the rename, the directory after it
        trace = open(os.path.join(md.dir, "strace.log")).read().splitlines()
        created = [i for i, l in enumerate(trace) if "O_EXCL" in l and name in l]
        assert created, "\n".join(trace)
        fd = trace[created[0]].rsplit("=", 1)[1].strip()
        renamed = [i for i, l in enumerate(trace) if re.search(r"(renameat2|linkat)\(", l) and name in l]
        assert renamed
        new_fd = re.search(r"(?:renameat2|linkat)\(\d+, \"[^\"]+\", (\d+),", trace[renamed[0]]).group(1)
        synced_file = [i for i, l in enumerate(trace) if re.search(r"fsync\(%s\)\s+= 0" % fd, l)]
        synced_dir = [i for i, l in enumerate(trace) if re.search(r"fsync\(%s\)\s+= 0" % new_fd, l)]
        assert synced_file and synced_file[0] > created[0] and synced_file[0] < renamed[0]
        assert [i for i in synced_dir if i > renamed[0]]
    md.start()
    c = login(md)
    assert c.cmd("STAT") == b"+OK 1 %d" % len(wire(msg))
    assert retr(c, 1) == wire(msg)   # (the client unstuffs)
    c.cmd("QUIT")


def test_store_creates_a_missing_maildir(md):
    add_user_with_maildir(md, "carol", "sub/carol")
    assert md.store("carol@example.com", b"Subject: first\n\n") == 0
    path = os.path.join(md.dir, "maildirs", "sub", "carol")
    for sub in ("tmp", "new", "cur"):
        st = os.stat(os.path.join(path, sub))
        assert st.st_mode & 0o777 == 0o700
    assert len(os.listdir(os.path.join(path, "new"))) == 1
    md.start()
    c = login(md, "carol")
    assert c.cmd("STAT").startswith(b"+OK 1 ")
    c.cmd("QUIT")


def test_store_into_a_full_filesystem(md):
    """A small tmpfs as the user's Maildir: the message that does not fit
    gets 75 and leaves nothing; one that fits is stored."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mnt = os.path.join(md.dir, "maildirs", "full")
    os.makedirs(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mnt],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.decode(errors="replace"))
    try:
        make_maildir_at(md, mnt)
        add_user_with_maildir(md, "full", "full")
        big = b"Subject: big\n\n" + b"0123456789abcdef\n" * 8000   # 136 KB
        r = md.tool("tpops-store", "full@example.com", input=big, check=False)
        assert r.returncode == 75, r.stderr
        assert b"No space left on device" in r.stderr
        assert os.listdir(os.path.join(mnt, "new")) == []
        assert os.listdir(os.path.join(mnt, "tmp")) == []
        assert md.store("full@example.com", b"Subject: small\n\n") == 0
        assert len(os.listdir(os.path.join(mnt, "new"))) == 1
    finally:
        subprocess.run(["umount", mnt])


def test_store_over_file_size_limit(md):
    """RLIMIT_FSIZE (EFBIG, not a SIGXFSZ kill): 75 and nothing left. The
    limit leaves room for SQLite's 32 KiB shared-memory file."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
    big = b"Subject: big\n\n" + b"x" * 200000 + b"\n"
    r = subprocess.run([program("tpops-store"), "-c", md.conf, "alice@example.com"], input=big,
                       capture_output=True, preexec_fn=limit, env=dict(os.environ, ASAN_OPTIONS=TOOL_ASAN))
    assert r.returncode == 75, r.stderr
    assert b"File too large" in r.stderr
    assert files(md, "new") == [] and files(md, "tmp") == []


def test_store_unwritable_maildir(md):
    new = os.path.join(maildir(md), "new")
    if IS_ROOT:
        shutil.chown(new, "root", "root")   # the tool runs as nobody
    os.chmod(new, 0o555)
    try:
        r = md.tool("tpops-store", "alice@example.com", input=b"Subject: x\n\n", check=False)
        assert r.returncode == 75, r.stderr
        assert files(md, "new") == [] and files(md, "tmp") == []
    finally:
        os.chmod(new, 0o700)


def test_store_quota(make_tpops):
    """Quota counts the Maildir's stored sizes: S= fields, the size cache,
    or the file's size for files that have neither."""
    t = make_tpops(backend="maildir")
    t.add_user("alice", PASSWORD, None, "--quota", "1000")
    drop(t, "new", "1600000001.M0P1Q1.h", b"x" * 300)                  # no field: stat
    drop(t, "cur", "1600000002.M0P1Q1.h,S=200:2,S", b"y" * 200)         # S=
    assert t.store("alice@example.com", b"z" * 400) == 0                # 900
    r = t.tool("tpops-store", "alice@example.com", input=b"w" * 101, check=False)
    assert r.returncode == 73, r.stderr
    assert b"quota" in r.stderr
    assert len(files(t, "new")) == 2 and files(t, "tmp") == []
    assert t.store("alice@example.com", b"v" * 100) == 0                # exactly 1000


# -- a big maildrop --

def test_100k_messages(make_tpops):
    """100,000 files, half with size fields and half without: STAT, LIST
    and UIDL are right at the first login and at the second, which reads
    no message file (the timing is in bench/maildir_100k.py)."""
    t = make_tpops(backend="maildir", LogLevel="debug")
    t.add_user("alice", PASSWORD)
    n = 100000
    root = maildir(t)
    total = 0
    expected_uidls = []
    sizes = {}
    for i in range(n):
        body = b"Subject: message %d\n\n%s\n" % (i, b"x" * (i % 97))
        w = len(body) + body.count(b"\n")
        base = "%d.M%06dP4242Q%d.gen" % (1500000000 + i // 3, i % 1000000, i)
        if i % 2:
            base += ",S=%d,W=%d" % (len(body), w)
        name = base if i % 4 < 2 else base + ":2,S"
        fd = os.open(os.path.join(root, "new" if i % 4 < 2 else "cur", name),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, body)
        os.close(fd)
        total += w
        expected_uidls.append(base.encode())
        sizes[i + 1] = w
    t.start()
    for attempt in ("first", "second"):
        c = login(t)
        assert c.cmd("STAT") == b"+OK %d %d" % (n, total), attempt
        uidls = listing(c, "UIDL")
        assert [u for _, u in uidls] == expected_uidls
        assert [int(k) for k, _ in uidls] == list(range(1, n + 1))
        assert all(int(s) == sizes[int(k)] for k, s in listing(c, "LIST"))
        assert c.cmd("LIST 77777") == b"+OK 77777 %d" % sizes[77777]
        assert retr(c, n).startswith(b"Subject: message %d\r\n" % (n - 1))
        assert c.cmd("QUIT").startswith(b"+OK")
    log = t.read_log()
    assert "sizes from names 50000, from the cache 0, measured 50000" in log
    assert "sizes from names 50000, from the cache 50000, measured 0" in log
