"""Message content end to end: stored with tpops-store, fetched over POP3.
RETR gives back the stored octets with CRLF line ends (dot-stuffed on the
wire), STAT/LIST report exactly the octets of the unstuffed RETR body, and
TOP n k cuts after the header and k body lines. A 20 MiB message streams
without the daemon holding it in memory."""
import os
import poplib
import re
import time

import pytest

from conftest import Client
from pop3tls import Pop3, cert, client_context, tls_settings  # noqa: F401 (cert: a fixture)


def wire(msg):
    """What RETR must deliver before dot-stuffing: LF and CRLF line ends
    become CRLF, a bare CR stays, a last line without a line end gets one."""
    out = re.sub(rb"\r?\n", b"\r\n", msg)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def stuff(data):
    return re.sub(rb"(^|\r\n)\.", rb"\1..", data)


def top(msg, k):
    """TOP n k of a message: header, the empty line, k body lines."""
    lines = wire(msg).split(b"\r\n")[:-1]
    if b"" not in lines:
        return wire(msg)
    end = lines.index(b"") + 1 + k
    return b"".join(line + b"\r\n" for line in lines[:end])


def read_multiline(c, on_recv=None):
    """The raw octets of a multi-line answer after its status line, up to
    and without the terminating ".\\r\\n" (still dot-stuffed)."""
    data = bytearray(c.buf)
    c.buf = b""
    searched = 0
    while True:
        if data[:3] == b".\r\n":   # nothing before the terminator
            c.buf = bytes(data[3:])
            return b""
        i = data.find(b"\r\n.\r\n", max(0, searched - 4))
        if i >= 0:
            c.buf = bytes(data[i + 5:])
            return bytes(data[:i + 2])
        searched = len(data)
        more = c.sock.recv(1 << 20)
        if not more:
            raise EOFError("connection closed inside a multi-line answer")
        data += more
        if on_recv is not None:
            on_recv(len(data))


def unstuff(raw):
    lines = raw.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.startswith(b"."):
            assert line.startswith(b".."), f"line {i} starts with an unstuffed dot: {line[:40]!r}"
            lines[i] = line[1:]
    return b"\r\n".join(lines)


def retr(c, command):
    """Sends RETR/TOP; returns (status line, raw stuffed body)."""
    status = c.cmd(command)
    assert status.startswith(b"+OK"), (command, status)
    return status, read_multiline(c)


SJIS = "件名: テスト\n\n日本語のメールです。ソ表能十\n半角ｶﾀｶﾅ\n".encode("shift_jis")

MESSAGES = {
    "8bit": b"Subject: =?x?= \xe9\xe8\n\n" + bytes(range(0x80, 0x100)) + b"\n\xff\xfe\xfd\n",
    "shift_jis": b"Content-Type: text/plain; charset=Shift_JIS\n" + SJIS,
    "invalid_utf8": b"Subject: bad utf-8 \xc3\x28\n\n\xa0\xa1 \xf0\x28\x8c\x28 \xed\xa0\x80 "
                    b"\xc0\xaf \xf8\x88\x80\x80\x80 \xfe\xff\n",
    "nul_octets": b"Subject: nul\n\nbefore\x00after\n\x00\n",
    "dots": b"Subject: dots\n\n.\n..\n...\n.hidden\n..double\n. space\nmiddle . dot\n.\n",
    "dot_in_header": b".Subject: header starting with a dot\nX: y\n\nbody\n",
    "dot_last_line_no_newline": b"Subject: d\n\nline\n.",
    "long_line": b"Subject: long\n\n" + b"".join(bytes([0x41 + i % 26]) for i in range(5000))
                 + b"\nshort\n." + b"x" * 1200 + b"\n",
    "empty_body": b"Subject: empty body\nFrom: a@example.org\n\n",
    "no_trailing_newline": b"Subject: nt\n\nfirst\nlast line without newline",
    "crlf": b"Subject: crlf\r\nFrom: a@example.org\r\n\r\nline 1\r\n.dot\r\n\r\nline 3\r\n",
    "lf": b"Subject: lf\nFrom: a@example.org\n\nline 1\n.dot\n\nline 3\n",
    "mixed_line_ends": b"Subject: mixed\r\nX: y\n\r\nline 1\nline 2\r\n\nline 4",
    "bare_cr": b"Subject: cr\n\nbefore\rafter\n\r\n\rstart\nmid\r\rdouble\nend\r",
    "bare_cr_before_dot": b"Subject: cr\n\n\r.not stuffed\n\r\n.stuffed\n",
    "header_only": b"Subject: no body\nFrom: a@example.org\n",
    "no_header": b"\nbody without header\n",
    "many_blank_lines": b"Subject: b\n\n\n\n\nx\n\n",
    "only_a_newline": b"\n",
    "empty_message": b"",
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """One daemon with one user per message of MESSAGES (the module's
    tests share it, for speed)."""
    import os
    import shutil
    import tempfile

    from conftest import Tpops, make_dir
    d = make_dir(tempfile.mkdtemp(prefix="tpops-test-", dir="/tmp"))
    t = Tpops(os.path.join(d, "messages"))
    for name, msg in MESSAGES.items():
        t.tool("tpops-useradd", "--plain", name, "pw", f"{name}@example.com")
        t.store(f"{name}@example.com", msg)
    t.start()
    yield t
    alive = t.proc.poll() is None
    t.stop()
    log = t.read_log()
    shutil.rmtree(d, ignore_errors=True)
    assert alive, log
    assert "ERROR: AddressSanitizer" not in log, log
    assert "runtime error:" not in log, log


@pytest.fixture
def session(loaded):
    made = []

    def login(name):
        c = Client(loaded.port)
        made.append(c)
        c.login(name, "pw")
        return c
    yield login
    for c in made:
        c.close()


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_retr_exact(session, name):
    msg = MESSAGES[name]
    c = session(name)
    stat = c.cmd("STAT")
    m = re.fullmatch(rb"\+OK 1 (\d+)", stat)
    assert m, stat
    size = int(m.group(1))
    assert c.cmd("LIST 1") == b"+OK 1 %d" % size
    status = c.cmd("LIST")
    assert status.startswith(b"+OK")
    assert read_multiline(c) == b"1 %d\r\n" % size
    status, raw = retr(c, "RETR 1")
    # the octet count RETR announces (if any) is the same size
    counts = re.findall(rb"(\d+) octets", status)
    assert counts in ([], [b"%d" % size]), status
    body = unstuff(raw)
    assert body == wire(msg)
    assert raw == stuff(wire(msg))
    assert len(body) == size
    # RETR again gives the same
    assert retr(c, "RETR 1")[1] == raw
    assert c.cmd("QUIT").startswith(b"+OK")


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_top(session, name):
    msg = MESSAGES[name]
    c = session(name)
    for k in (0, 1, 2, 1000000):
        _, raw = retr(c, f"TOP 1 {k}")
        assert unstuff(raw) == top(msg, k), k
        assert raw == stuff(top(msg, k)), k
    # TOP marks nothing as retrieved and changes nothing
    assert c.cmd("STAT") == b"+OK 1 %d" % len(wire(msg))
    assert c.cmd("QUIT").startswith(b"+OK")


def test_top_counts():
    """The expectations above, checked on a message whose cut is known."""
    msg = b"A: 1\nB: 2\n\nl1\nl2\nl3\n"
    assert top(msg, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top(msg, 1) == b"A: 1\r\nB: 2\r\n\r\nl1\r\n"
    assert top(msg, 9) == wire(msg)


def test_all_in_one_maildrop(make_tpops, monkeypatch):
    """Every message in one maildrop, read with poplib: sizes of STAT, LIST
    and RETR agree message by message, and in total."""
    t = make_tpops()
    t.add_user("alice", "secret")
    names = sorted(MESSAGES)
    for name in names:
        t.store("alice@example.com", MESSAGES[name])
    t.start()
    monkeypatch.setattr(poplib, "_MAXLINE", 1 << 16)   # the 5000-octet line
    p = poplib.POP3("127.0.0.1", t.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    count, total = p.stat()
    assert count == len(names)
    assert total == sum(len(wire(MESSAGES[n])) for n in names)
    _, listing, _ = p.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert sizes == [len(wire(MESSAGES[n])) for n in names]
    for i, name in enumerate(names, 1):
        _, lines, octets = p.retr(i)
        # poplib strips the CRLFs and unstuffs
        assert b"".join(line + b"\r\n" for line in lines) == wire(MESSAGES[name]), name
        _, lines, _ = p.top(i, 0)
        assert b"".join(line + b"\r\n" for line in lines) == top(MESSAGES[name], 0), name
    p.quit()


def test_read_ahead_in_every_order(make_tpops, backend):
    """The SQL stores read the message after a retrieved one ahead of its
    RETR. Whatever the client does next (RETR it, pipelined or not; DELE
    it; TOP it; skip it; QUIT or hang up while it is being read), it gets
    what it would get without read-ahead."""
    t = make_tpops(backend=backend, LogLevel="debug")
    t.add_user("alice", "secret")
    big = b"Subject: over one piece\n\n" + b"x" * 99 + b"\n" * 1 + b"".join(
        b"%07d .line\n" % i for i in range(30000))
    msgs = [MESSAGES["dots"], MESSAGES["crlf"], big, MESSAGES["8bit"], MESSAGES["lf"],
            MESSAGES["empty_message"], MESSAGES["bare_cr"]]
    for m in msgs:
        t.store("alice@example.com", m)
    t.start()

    def check_retr(c, n):
        status, raw = retr(c, f"RETR {n}")
        assert status == b"+OK %d octets" % len(wire(msgs[n - 1]))
        assert unstuff(raw) == wire(msgs[n - 1]), n

    c = Client(t.port)
    c.login("alice", "secret")
    check_retr(c, 1)
    check_retr(c, 2)                          # read ahead, most likely ready
    c.send(b"RETR 4\r\nRETR 5\r\n")          # skips 3; 5 pipelined behind 4
    for n in (4, 5):
        status, raw = c.line(), read_multiline(c)
        assert status == b"+OK %d octets" % len(wire(msgs[n - 1])) and unstuff(raw) == wire(
            msgs[n - 1])
    assert c.cmd("DELE 6").startswith(b"+OK")  # read ahead after 5, then deleted
    assert c.cmd("RETR 6") == b"-ERR No such message"
    assert c.cmd("RSET").startswith(b"+OK")
    check_retr(c, 6)
    status, raw = retr(c, "TOP 7 0")           # read ahead after 6, then a TOP
    assert unstuff(raw) == top(msgs[6], 0)
    check_retr(c, 3)                          # more than one piece: never read ahead
    check_retr(c, 7)
    check_retr(c, 1)                          # again: 2 was retrieved, no read-ahead
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
    for end in ("QUIT", "hang up"):           # with 2 read ahead, or on its way
        c = Client(t.port)
        c.login("alice", "secret")
        check_retr(c, 1)
        if end == "QUIT":
            assert c.cmd("QUIT").startswith(b"+OK")
        c.close()
    time.sleep(0.3)
    t.assert_alive()
    log = t.read_log()
    if backend == "maildir":                  # read from memory on the I/O thread
        assert "was read ahead" not in log
    else:
        for n in (2, 5, 6):
            assert f"message {n} was read ahead" in log, log
        assert "message 3 was read ahead" not in log


def chunk_size():
    """The size of the pieces the daemon reads a message in."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "src", "tpops_limits.h")
    m = re.search(r"#define RETR_CHUNK_SIZE \(?([\d *]+)\)?", open(path).read())
    return eval(m.group(1))   # e.g. "256 * 1024"


def seam_messages():
    """Messages with what the output filter must carry from one piece to
    the next right at the seams between pieces of RETR_CHUNK_SIZE octets."""
    n = chunk_size()
    line = b"".join(bytes([0x41 + i % 26]) for i in range(998)) + b"\n"

    def filled(size, head=b"Subject: seams\n\n"):
        out = bytearray(head)
        while len(out) < size:
            out += line
        return out[:size]

    def at(data, pos, octets):
        data[pos:pos + len(octets)] = octets
        return data

    body = filled(3 * n + 500)
    return {
        "crlf_split": at(bytearray(body), n - 1, b"\r\n"),
        "bare_cr_at_seam": at(bytearray(body), n - 1, b"\rx"),
        "cr_cr_lf_at_seam": at(bytearray(body), n - 1, b"\r\r\n"),
        "dot_after_seam": at(bytearray(body), n - 1, b"\n."),
        "dot_dot_after_seam": at(bytearray(body), 2 * n - 1, b"\n..\n.\n"),
        "lf_before_seam_dot": at(bytearray(body), n - 2, b"\r\n.x"),
        "ends_in_cr_at_seam": bytes(filled(2 * n - 1)) + b"\r",
        "ends_at_seam": bytes(filled(2 * n - 1)) + b"\n",
        # the header/body split of the SQL store at a seam, and a header
        # longer than one piece
        "header_ends_at_seam": bytes(filled(n - 1, b"X-Long: h\n")) + b"\n\n.body\n",
        "header_over_seams": bytes(filled(2 * n + 77, b"X-Long: h\n")) + b"\n\nbody\n",
    } | crlf_seam_messages(n, line)


def crlf_seam_messages(n, line):
    """Messages already in wire form (CRLF, nothing to stuff), which go out
    as they are read (and from the file under kernel TLS), with the CR of
    a CRLF as the last octet of a piece: the daemon leaves it to the next
    piece."""
    line = line[:-1] + b"\r\n"

    def crlf(size, head=b""):
        out = bytearray(head)
        while len(out) < size:
            out += line
        return bytes(out[:size])

    head = b"Subject: wire form\r\n\r\n"
    first = crlf(n - 1, head)  # the CR of the next CRLF ends the first piece
    return {
        "crlf_cr_ends_piece": first + b"\r\n" + crlf(n + 300) + b"\r\n",
        "crlf_cr_ends_piece_then_dot": first + b"\r\n.dot\r\n" + crlf(n) + b"\r\n",
        # after the first piece is one octet short, the second ends one
        # octet earlier too: its last octet is 2n - 2
        "crlf_cr_ends_two_pieces": first + b"\r\n" + crlf(n - 3) + b"\r\n" + crlf(500) + b"\r\n",
        "crlf_ends_with_cr_at_seam": first + b"\r",
        "crlf_bare_cr_ends_piece": first + b"\rx" + crlf(n) + b"\r\n",
    }


@pytest.mark.parametrize("backend", ["sqlite", "maildir"])
@pytest.mark.parametrize("over", ["plaintext", "pop3s"])
def test_piece_seams(make_tpops, cert, backend, over):
    """Line ends, bare CRs and leading dots that fall on the boundary
    between two pieces the daemon reads come out as if read whole, from
    either store, in plaintext (where Maildir pieces are read on the I/O
    thread) and over TLS (read on storage workers)."""
    t = make_tpops(backend=backend, **tls_settings(cert))
    t.add_user("alice", "secret")
    msgs = seam_messages()
    names = sorted(msgs)
    for name in names:
        t.store("alice@example.com", bytes(msgs[name]))
    t.start()
    if over == "pop3s":
        c = Pop3(t.settings["TLS_Port"], tls=client_context(cert), timeout=30)
    else:
        c = Pop3(t.port, timeout=30)
    c.login("alice", "secret")
    for i, name in enumerate(names, 1):
        msg = bytes(msgs[name])
        size = len(wire(msg))
        assert c.cmd(f"LIST {i}") == b"+OK %d %d" % (i, size), name
        _, raw = retr(c, f"RETR {i}")
        assert raw == stuff(wire(msg)), name
        assert len(unstuff(raw)) == size, name
        _, raw = retr(c, f"TOP {i} 3")
        assert raw == stuff(top(msg, 3)), name
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()


def big_message(size):
    """size octets of LF-ended 8-bit lines, some starting with '.'."""
    line = bytes(range(0x20, 0x7f)) + bytes(range(0xa0, 0x100))
    parts = [b"Subject: big\nFrom: a@example.org\n\n"]
    n = len(parts[0])
    i = 0
    while n < size:
        text = b"%08d " % i + line[i % 64: i % 64 + 60]
        if i % 7 == 0:
            text = b"." + text
        parts.append(text + b"\n")
        n += len(text) + 1
        i += 1
    return b"".join(parts)[:size - 1] + b"\n"


def test_20mib_streams(make_tpops):
    """RETR of a 20 MiB message is byte-exact, and the daemon's memory does
    not grow with the message: it reads and sends it piece by piece."""
    t = make_tpops()
    t.add_user("alice", "secret")
    warm = big_message(6 * 1024 * 1024)
    big = big_message(20 * 1024 * 1024)
    t.store("alice@example.com", warm)
    t.store("alice@example.com", big)
    t.start()
    expect = wire(big)
    c = Client(t.port, timeout=60)
    c.login()
    assert c.cmd("STAT") == b"+OK 2 %d" % (len(wire(warm)) + len(expect))
    assert c.cmd("LIST 2") == b"+OK 2 %d" % len(expect)
    # What does not depend on the message's size (the storage workers'
    # SQLite page caches, ASan's 8 MB quarantine of freed pieces, socket
    # buffers) fills up with a first, smaller message; what remains to
    # grow during the big one would be the message itself.
    _, raw = retr(c, "RETR 1")
    assert unstuff(raw) == wire(warm)
    assert c.cmd("NOOP").startswith(b"+OK")
    rss_before = t.rss_kib()
    # ask for it and read nothing for a while: a server that loads the
    # message whole (or reads it faster than the socket drains) grows now
    c.send(b"RETR 2\r\n")
    time.sleep(1.0)
    rss_peak = t.rss_kib()
    status = c.line()
    assert status.startswith(b"+OK"), status
    samples = []

    def sample(received):
        if len(samples) < received >> 20:   # about once per MiB
            samples.append(t.rss_kib())
    raw = read_multiline(c, sample)
    rss_peak = max([rss_peak, t.rss_kib()] + samples)
    body = unstuff(raw)
    assert len(body) == len(expect)
    assert body == expect
    growth_mib = (rss_peak - rss_before) / 1024
    assert growth_mib < 5, f"daemon RSS grew by {growth_mib:.1f} MiB during a 20 MiB RETR"
    # the session goes on
    assert c.cmd("NOOP").startswith(b"+OK")
    _, head = retr(c, "TOP 2 0")
    assert head == b"Subject: big\r\nFrom: a@example.org\r\n\r\n"
    assert c.cmd("QUIT").startswith(b"+OK")
    c.close()
