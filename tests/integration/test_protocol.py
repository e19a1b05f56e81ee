"""RFC 1939 / RFC 2449 behaviour of the daemon, over a raw socket: the
greeting, the states, sizes, RETR/TOP output, message numbers, deletion,
UIDL, CAPA, pipelining and the response codes."""
import hashlib
import re

import pytest

# Messages with everything the output filter must get right: LF and CRLF
# line ends, lines that start with '.', a line that is only '.', 8-bit
# bytes, a line over 998 octets, no final line end, an empty body, a bare
# CR inside a line.
LONG = b"L" * 1500
MESSAGES = [
    b"From: a@example.com\nSubject: lf\n\nline one\n.dot line\n..two dots\n"
    b"\xe4\xf6\xfc 8-bit \xff\x80\n" + LONG + b"\n.\nlast line without end",
    b"From: a@example.com\r\nSubject: crlf\r\n\r\n.starts with dot\r\n"
    b"\xc3\xa9t\xc3\xa9\r\n" + LONG + b"\r\n.\r\n\r\nend\r\n",
    b"Subject: empty body\r\n\r\n",
    b"Subject: header only, no line end",
    b"Subject: bare cr\n\nhas\ra bare CR\nand a CR at the end\r",
]


def wire(msg):
    """The octets RETR sends for msg before dot-stuffing: CRLF line ends,
    a final CRLF added when missing."""
    out = re.sub(rb"\r?\n", b"\r\n", msg)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def stuffed_lines(data):
    """The lines of wire data as a multi-line answer carries them."""
    lines = data.split(b"\r\n")
    assert lines[-1] == b""
    return [b"." + l if l.startswith(b".") else l for l in lines[:-1]]


def raw_multiline(c):
    """Raw lines of a multi-line answer up to (without) the final '.'."""
    lines = []
    while True:
        line = c.line()
        if line == b".":
            return lines
        lines.append(line)


def login(client_for, t, user="alice", password="secret"):
    c = client_for(t)
    c.login(user, password)
    return c


@pytest.fixture
def sql_tpops(make_tpops):
    """A started daemon on the SQLite `msg` table, for what only the SQL
    store has (the seed's UIDL, the msg rows)."""
    t = make_tpops("sql")
    t.add_user("alice", "secret")
    t.add_user("bob", "pw", None, "--plain")
    return t.start()


def listing(c, command):
    status = c.cmd(command)
    assert status.startswith(b"+OK"), status
    return [tuple(l.split(b" ")) for l in c.multiline()]


# -- greeting and states --

def test_greeting_has_unique_apop_timestamp(tpops, client_for):
    seen = set()
    for _ in range(20):
        c = client_for(tpops)
        m = re.fullmatch(rb"\+OK .*(<[\x21-\x7e]+@tpops\.test>)", c.greeting)
        assert m, c.greeting
        seen.add(m.group(1))
        c.close()
    assert len(seen) == 20


def test_apop_uses_this_connections_timestamp(tpops, client_for):
    first = client_for(tpops)
    second = client_for(tpops)
    ts1 = re.search(rb"<.*>", first.greeting).group(0)
    # a digest made for another connection's timestamp is refused
    digest = hashlib.md5(ts1 + b"pw").hexdigest()
    assert second.cmd(f"APOP bob {digest}").startswith(b"-ERR [AUTH]")
    assert first.cmd(f"APOP bob {digest}").startswith(b"+OK")
    assert first.cmd("STAT").startswith(b"+OK")


def test_commands_in_the_wrong_state(tpops, client_for):
    tpops.store("alice@example.com", MESSAGES[0])
    c = client_for(tpops)
    for command in ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET",
                    "TOP 1 0", "UIDL", "UIDL 1"]:
        assert c.cmd(command).startswith(b"-ERR"), command
        assert c.cmd("CAPA").startswith(b"+OK")
        c.multiline()
    assert c.cmd("PASS secret").startswith(b"-ERR"), "PASS before USER"
    # a failed PASS starts over at USER
    assert c.cmd("USER alice").startswith(b"+OK")
    assert c.cmd("PASS wrong").startswith(b"-ERR [AUTH]")
    assert c.cmd("PASS secret").startswith(b"-ERR")
    c.login()
    for command in ["USER alice", "PASS secret", "APOP bob 0123456789abcdef0123456789abcdef"]:
        assert c.cmd(command).startswith(b"-ERR"), command
        assert c.cmd("NOOP") == b"+OK"
    assert c.cmd("STAT") == b"+OK 1 %d" % len(wire(MESSAGES[0]))
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()


def test_quit_in_authorization(tpops, client_for):
    c = client_for(tpops)
    assert c.cmd("USER alice").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()


# -- sizes, RETR, TOP --

def test_sizes_and_retr_output(tpops, client_for):
    for m in MESSAGES:
        tpops.store("alice@example.com", m)
    c = login(client_for, tpops)
    total = sum(len(wire(m)) for m in MESSAGES)
    assert c.cmd("STAT") == b"+OK %d %d" % (len(MESSAGES), total)
    assert listing(c, "LIST") == [(b"%d" % (i + 1), b"%d" % len(wire(m)))
                                  for i, m in enumerate(MESSAGES)]
    for i, m in enumerate(MESSAGES, 1):
        assert c.cmd(f"LIST {i}") == b"+OK %d %d" % (i, len(wire(m)))
        status = c.cmd(f"RETR {i}")
        assert status.startswith(b"+OK"), status
        if re.match(rb"\+OK \d+ octets", status):
            assert int(status.split()[1]) == len(wire(m))
        assert raw_multiline(c) == stuffed_lines(wire(m)), f"message {i}"
    assert c.cmd("NOOP") == b"+OK"


def test_retr_ends_with_crlf_dot_crlf(tpops, client_for):
    tpops.store("alice@example.com", b"Subject: x\n\nno final newline")
    tpops.store("alice@example.com", b"")
    c = login(client_for, tpops)
    assert c.cmd("RETR 1").startswith(b"+OK")
    expected = b"Subject: x\r\n\r\nno final newline\r\n.\r\n"
    while len(c.buf) < len(expected):
        c.buf += c.sock.recv(65536)
    assert c.buf == expected
    c.buf = b""
    # an empty message: the terminator alone
    assert c.cmd("LIST 2") == b"+OK 2 0"
    assert c.cmd("RETR 2").startswith(b"+OK")
    assert c.line() == b"."
    assert c.cmd("NOOP") == b"+OK"


def test_top(tpops, client_for):
    msg = (b"From: a@example.com\nSubject: top\n\n.body one\nbody two\n"
           b"body three\n")
    tpops.store("alice@example.com", msg)
    tpops.store("alice@example.com", b"Subject: only a header\n")
    c = login(client_for, tpops)
    header = [b"From: a@example.com", b"Subject: top", b""]
    assert c.cmd("TOP 1 0").startswith(b"+OK")
    assert raw_multiline(c) == header
    assert c.cmd("TOP 1 1").startswith(b"+OK")
    assert raw_multiline(c) == header + [b"..body one"]
    assert c.cmd("TOP 1 2").startswith(b"+OK")
    assert raw_multiline(c) == header + [b"..body one", b"body two"]
    assert c.cmd("TOP 1 1000").startswith(b"+OK")
    assert raw_multiline(c) == stuffed_lines(wire(msg))
    assert c.cmd("TOP 2 0").startswith(b"+OK")
    assert raw_multiline(c) == [b"Subject: only a header"]
    # TOP marks nothing as read and changes no size
    assert c.cmd("STAT") == b"+OK 2 %d" % (len(wire(msg)) + len(wire(b"Subject: only a header\n")))


# -- numbers, deletion, RSET, QUIT --

def test_message_numbers_are_fixed_and_dele_hides(tpops, client_for):
    msgs = [b"Subject: m%d\n\nbody %d\n" % (i, i) for i in range(1, 4)]
    for m in msgs:
        tpops.store("alice@example.com", m)
    c = login(client_for, tpops)
    uidls = dict(listing(c, "UIDL"))
    assert c.cmd("DELE 2").startswith(b"+OK")
    # delivered during the session: not seen, and no number moves
    tpops.store("alice@example.com", b"Subject: late\n\nlate\n")
    size = lambda i: len(wire(msgs[i - 1]))
    assert c.cmd("STAT") == b"+OK 2 %d" % (size(1) + size(3))
    assert listing(c, "LIST") == [(b"1", b"%d" % size(1)), (b"3", b"%d" % size(3))]
    assert listing(c, "UIDL") == [(b"1", uidls[b"1"]), (b"3", uidls[b"3"])]
    for command in ["RETR 2", "TOP 2 0", "DELE 2", "LIST 2", "UIDL 2", "RETR 4", "LIST 4"]:
        assert c.cmd(command).startswith(b"-ERR"), command
        assert c.cmd("NOOP") == b"+OK"
    assert c.cmd("RETR 3").startswith(b"+OK")
    assert c.multiline() == [b"Subject: m3", b"", b"body 3"]
    reply = c.cmd("RSET")
    assert reply.startswith(b"+OK"), reply
    assert c.cmd("STAT") == b"+OK 3 %d" % sum(map(size, (1, 2, 3)))
    assert c.cmd("RETR 2").startswith(b"+OK")
    assert c.multiline() == [b"Subject: m2", b"", b"body 2"]
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 3").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()
    # the next session numbers afresh
    c = login(client_for, tpops)
    assert listing(c, "LIST") == [(b"1", b"%d" % size(2)),
                                  (b"2", b"%d" % len(wire(b"Subject: late\n\nlate\n")))]
    assert c.cmd("RETR 1").startswith(b"+OK")
    assert c.multiline() == [b"Subject: m2", b"", b"body 2"]


def test_dele_all_then_quit(tpops, client_for):
    for i in range(3):
        tpops.store("alice@example.com", b"Subject: %d\n\nx\n" % i)
    c = login(client_for, tpops)
    for i in (1, 2, 3):
        assert c.cmd(f"DELE {i}").startswith(b"+OK")
    assert c.cmd("STAT") == b"+OK 0 0"
    assert listing(c, "LIST") == []
    assert listing(c, "UIDL") == []
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()
    assert login(client_for, tpops).cmd("STAT") == b"+OK 0 0"


def test_deletions_reach_the_database_only_at_quit(sql_tpops, client_for):
    t = sql_tpops
    for i in range(3):
        t.store("alice@example.com", b"Subject: %d\n\nx\n" % i)
    ids = [r[0] for r in t.sql("SELECT id FROM msg ORDER BY id")]
    # the size column holds what POP3 sends
    assert [r[0] for r in t.sql("SELECT size FROM msg ORDER BY id")] == \
        [len(wire(b"Subject: %d\n\nx\n" % i)) for i in range(3)]
    c = login(client_for, t)
    assert c.cmd("DELE 1").startswith(b"+OK")
    assert c.cmd("DELE 3").startswith(b"+OK")
    assert c.cmd("STAT").startswith(b"+OK 1 ")
    assert [r[0] for r in t.sql("SELECT id FROM msg ORDER BY id")] == ids
    assert c.cmd("QUIT").startswith(b"+OK")
    # the reply comes after the commit
    assert [r[0] for r in t.sql("SELECT id FROM msg ORDER BY id")] == [ids[1]]
    assert c.closed()


def test_uidl_is_id_uid_timestamp(sql_tpops, client_for):
    tpops = sql_tpops
    for i in range(3):
        tpops.store("alice@example.com", b"Subject: %d\n\nx\n" % i)
    tpops.store("bob@example.com", b"Subject: bob\n\nx\n")
    rows = tpops.sql("SELECT m.id, m.uid, m.timestamp FROM msg m JOIN user u ON u.uid = m.uid "
                     "WHERE u.login = 'alice' ORDER BY m.timestamp, m.id")
    expected = []
    for i, (mid, uid, ts) in enumerate(rows, 1):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", ts), ts
        expected.append((b"%d" % i, f"{mid}.{uid}.{re.sub(r'[^0-9]', '', ts)}".encode()))
    c = login(client_for, tpops)
    got = listing(c, "UIDL")
    assert got == expected
    for n, uidl in expected:
        assert re.fullmatch(rb"\d+\.\d+\.\d{14}", uidl)
        assert c.cmd(b"UIDL " + n) == b"+OK " + n + b" " + uidl
    # stable across sessions
    assert c.cmd("QUIT").startswith(b"+OK")
    c = login(client_for, tpops)
    assert listing(c, "UIDL") == expected


def insert_message(t, uid, timestamp, text):
    header, _, body = text.partition(b"\n\n")
    t.sql("INSERT INTO msg (uid, msgno, timestamp, header, body, size) VALUES (?, 0, ?, ?, ?, ?)",
          (uid, timestamp, header + b"\n\n", body, len(wire(text))))
    return t.sql("SELECT max(id) FROM msg")[0][0]


def test_equal_arrival_times_keep_id_order(sql_tpops, client_for):
    tpops = sql_tpops
    uid = tpops.sql("SELECT uid FROM user WHERE login = 'alice'")[0][0]
    same = "2024-02-29 12:34:56"
    ids = {}
    # inserted in an order where id order and text order differ
    ids["c"] = insert_message(tpops, uid, same, b"Subject: c\n\nc\n")
    ids["a"] = insert_message(tpops, uid, same, b"Subject: a\n\na\n")
    ids["early"] = insert_message(tpops, uid, "2024-02-29 12:00:00", b"Subject: early\n\ne\n")
    ids["b"] = insert_message(tpops, uid, same, b"Subject: b\n\nb\n")
    order = ["early", "c", "a", "b"]
    for attempt in range(2):
        c = login(client_for, tpops)
        stamps = {"early": "20240229120000"}
        expected = [(b"%d" % (i + 1),
                     f"{ids[k]}.{uid}.{stamps.get(k, '20240229123456')}".encode())
                    for i, k in enumerate(order)]
        assert listing(c, "UIDL") == expected
        for i, k in enumerate(order, 1):
            assert c.cmd(f"TOP {i} 0").startswith(b"+OK")
            assert c.multiline() == [b"Subject: " + k.encode(), b""]
        assert c.cmd("QUIT").startswith(b"+OK")
        assert c.closed()


# -- CAPA, pipelining --

def capabilities(c):
    status = c.cmd("CAPA")
    assert status.startswith(b"+OK"), status
    return c.multiline()


def test_capa_in_both_states(tpops, client_for):
    c = client_for(tpops)
    for state in ("authorization", "transaction"):
        caps = capabilities(c)
        names = [l.split(b" ")[0] for l in caps]
        for required in [b"TOP", b"USER", b"UIDL", b"PIPELINING", b"RESP-CODES",
                         b"AUTH-RESP-CODE", b"IMPLEMENTATION"]:
            assert required in names, (state, caps)
        assert len(names) == len(set(names)), caps
        impl = [l for l in caps if l.startswith(b"IMPLEMENTATION ")]
        assert impl and len(impl[0]) > len(b"IMPLEMENTATION ")
        # no certificate is configured: STLS would be a lie
        assert b"STLS" not in names
        if state == "authorization":
            c.login()


def test_thousand_pipelined_noops(tpops, client_for):
    c = login(client_for, tpops)
    c.send(b"NOOP\r\n" * 1000 + b"STAT\r\n")
    for i in range(1000):
        assert c.line() == b"+OK", i
    assert c.line() == b"+OK 0 0"
    assert c.buf == b""


def test_pipelined_mix(tpops, client_for):
    msgs = [b"Subject: one\n\n.first\n", b"Subject: two\r\n\r\nsecond\r\n" + b"y" * 5000 + b"\r\n"]
    for m in msgs:
        tpops.store("alice@example.com", m)
    c = client_for(tpops)
    c.send(b"CAPA\r\nUSER alice\r\nPASS secret\r\nLIST\r\nUIDL\r\nRETR 1\r\nLIST 2\r\n"
           b"RETR 2\r\nTOP 1 0\r\nDELE 1\r\nRETR 1\r\nUIDL 2\r\nSTAT\r\nRSET\r\nSTAT\r\n")
    assert c.line().startswith(b"+OK")
    assert b"PIPELINING" in c.multiline()
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"+OK")
    sizes = [len(wire(m)) for m in msgs]
    assert c.multiline() == [b"1 %d" % sizes[0], b"2 %d" % sizes[1]]
    assert c.line().startswith(b"+OK")
    uidls = [l.split(b" ")[1] for l in c.multiline()]
    assert len(uidls) == 2
    assert c.line().startswith(b"+OK")
    assert raw_multiline(c) == stuffed_lines(wire(msgs[0]))
    assert c.line() == b"+OK 2 %d" % sizes[1]
    assert c.line().startswith(b"+OK")
    assert raw_multiline(c) == stuffed_lines(wire(msgs[1]))
    assert c.line().startswith(b"+OK")
    assert c.multiline() == [b"Subject: one", b""]
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"-ERR")
    assert c.line() == b"+OK 2 " + uidls[1]
    assert c.line() == b"+OK 1 %d" % sizes[1]
    assert c.line().startswith(b"+OK")
    assert c.line() == b"+OK 2 %d" % sum(sizes)
    assert c.buf == b""


# -- response codes --

def test_auth_failures_look_the_same(tpops, client_for):
    def pass_reply(user, password):
        c = client_for(tpops)
        assert c.cmd(f"USER {user}").startswith(b"+OK")
        return c.cmd(f"PASS {password}")

    unknown = pass_reply("nosuchuser", "secret")
    wrong = pass_reply("alice", "wrong")
    assert unknown.startswith(b"-ERR [AUTH]")
    assert unknown == wrong

    def apop_reply(user, password):
        c = client_for(tpops)
        ts = re.search(rb"<.*>", c.greeting).group(0)
        return c.cmd(f"APOP {user} {hashlib.md5(ts + password).hexdigest()}")

    assert apop_reply("nosuchuser", b"pw") == unknown
    assert apop_reply("bob", b"wrong") == unknown
    # alice's password is hashed: APOP cannot work, and says only [AUTH]
    assert apop_reply("alice", b"secret") == unknown
    assert apop_reply("bob", b"pw").startswith(b"+OK")


def test_in_use(tpops, client_for):
    tpops.store("alice@example.com", b"Subject: x\n\nx\n")
    first = login(client_for, tpops)
    second = client_for(tpops)
    assert second.cmd("USER alice").startswith(b"+OK")
    assert second.cmd("PASS secret").startswith(b"-ERR [IN-USE]")
    # the refused session goes on and may try again; another user is free
    second.login("bob", "pw")
    assert first.cmd("STAT").startswith(b"+OK 1 ")
    assert first.cmd("QUIT").startswith(b"+OK")
    assert first.closed()
    third = login(client_for, tpops)
    assert third.cmd("STAT").startswith(b"+OK 1 ")


def test_in_use_across_servers_sharing_a_database(make_tpops, client_for):
    a = make_tpops("a")
    a.add_user("alice", "secret")
    b = make_tpops("b", SQLite_Path=a.settings["SQLite_Path"])
    a.start()
    b.start()
    ca = login(client_for, a)
    cb = client_for(b)
    assert cb.cmd("USER alice").startswith(b"+OK")
    assert cb.cmd("PASS secret").startswith(b"-ERR [IN-USE]")
    assert ca.cmd("QUIT").startswith(b"+OK")
    assert ca.closed()
    assert cb.cmd("USER alice").startswith(b"+OK")
    assert cb.cmd("PASS secret").startswith(b"+OK")
