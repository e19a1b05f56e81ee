#!/usr/bin/python3
"""Fixtures for bench/run.sh: message files, Maildirs, Dovecot's passwd-file
and, for the thousands of idle-test users, rows in tpops's SQLite `user`
table. Deterministic (fixed seeds), standard library only.

  fixtures.py message OUT SIZE lf|crlf SEED
      one RFC 5322 message of about SIZE octets (text lines of 76
      characters, some starting with '.', so dot-stuffing is exercised)
  fixtures.py messages DIR COUNT SIZE SEED
      COUNT messages DIR/NNNNNN, alternating LF and CRLF line ends
  fixtures.py maildir MAILDIR FILE... | --count N --size S --seed X
      a Maildir (tmp/ new/ cur/) holding copies of FILEs (or N generated
      messages) under Postfix-style names in new/ (no S=/W= fields)
  fixtures.py passwd OUT MAILROOT UID GID [LOGIN PASSWD]... [--from-db DB]
      Dovecot passwd-file lines login:passwd:uid:gid::MAILROOT/login::
      with the stored passwords of tpops's database (same scheme, same hash)
  fixtures.py bulk-users DB FMT COUNT PASSWORD MAILROOT
      COUNT plaintext users FMT % i in tpops's SQLite database, one
      transaction (tpops-useradd is one process and one commit per user)
  fixtures.py empty-maildirs MAILROOT FMT COUNT
"""
import os
import random
import sqlite3
import sys

WORDS = ("the quick brown fox jumps over lazy dog mail server pop3 message "
         "retrieve delete quit list stat uidl benchmark dovecot tpops maildir "
         "header body line octet client socket epoll thread worker").split()


def make_message(size, crlf, seed):
    rnd = random.Random(seed)
    eol = b"\r\n" if crlf else b"\n"
    head = [
        b"Return-Path: <sender@bench.test>",
        b"Received: from localhost (localhost [127.0.0.1]) by bench.test",
        b"Message-ID: <%d.bench@bench.test>" % seed,
        b"Date: Thu, 26 Nov 2026 12:00:00 +0000",
        b"From: Sender <sender@bench.test>",
        b"To: Recipient <rcpt@bench.test>",
        b"Subject: benchmark message %d" % seed,
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=us-ascii",
    ]
    out = bytearray(eol.join(head) + eol + eol)
    pool = []
    for _ in range(256):
        words = []
        length = 0
        while length < 76:
            w = rnd.choice(WORDS)
            words.append(w)
            length += len(w) + 1
        pool.append(" ".join(words)[:76].encode() + eol)
    n = 0
    while len(out) < size:
        n += 1
        if n % 500 == 0:
            out += b".dot-stuffed line %d" % n + eol
        else:
            out += pool[rnd.randrange(256)]
    return bytes(out)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def cmd_message(out, size, kind, seed):
    write(out, make_message(int(size), kind == "crlf", int(seed)))


def cmd_messages(d, count, size, seed):
    os.makedirs(d, exist_ok=True)
    for i in range(int(count)):
        write(os.path.join(d, "%06d" % i), make_message(int(size), i % 2 == 1, int(seed) + i))


def make_maildir(path):
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)


def cmd_maildir(args):
    path = args[0]
    make_maildir(path)
    base = 1764158400  # fixed: the names (and Dovecot's UIDLs) repeat
    if args[1:2] == ["--count"]:
        count, size, seed = int(args[2]), int(args[4]), int(args[6])
        # a few distinct bodies, reused: generating 100,000 is slow
        bodies = [make_message(size, i % 2 == 1, seed + i) for i in range(64)]
        for i in range(count):
            name = "%d.M%dP%d.bench.test" % (base + i // 1000, i, 4242)
            write(os.path.join(path, "new", name), bodies[i % len(bodies)])
        return
    for i, src in enumerate(args[1:]):
        with open(src, "rb") as f:
            data = f.read()
        name = "%d.M%dP%d.bench.test" % (base + i // 1000, i, 4242)
        write(os.path.join(path, "new", name), data)


def cmd_passwd(args):
    out, mailroot, uid, gid = args[:4]
    rest = args[4:]
    rows = []
    if rest[:1] == ["--from-db"]:
        con = sqlite3.connect(rest[1])
        rows = con.execute('SELECT login, passwd FROM "user" ORDER BY uid').fetchall()
        con.close()
    else:
        rows = list(zip(rest[0::2], rest[1::2]))
    with open(out, "w") as f:
        for login, passwd in rows:
            if ":" in login or ":" in passwd or "\n" in passwd:
                raise SystemExit("fixtures: unusable user %r" % login)
            f.write("%s:%s:%s:%s::%s/%s::\n" % (login, passwd, uid, gid, mailroot, login))


def cmd_bulk_users(db, fmt, count, password, mailroot):
    con = sqlite3.connect(db, timeout=30)
    with con:
        con.executemany(
            'INSERT INTO "user" (login, passwd, mail, maildir, quota) VALUES (?, ?, ?, ?, 0)',
            ((fmt % i, "{PLAIN}" + password, (fmt % i) + "@bench.test",
              "%s/%s/Maildir" % (mailroot, fmt % i)) for i in range(int(count))))
    con.close()


def cmd_empty_maildirs(mailroot, fmt, count):
    for i in range(int(count)):
        make_maildir(os.path.join(mailroot, fmt % i, "Maildir"))


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "message":
        cmd_message(*args)
    elif cmd == "messages":
        cmd_messages(*args)
    elif cmd == "maildir":
        cmd_maildir(args)
    elif cmd == "passwd":
        cmd_passwd(args)
    elif cmd == "bulk-users":
        cmd_bulk_users(*args)
    elif cmd == "empty-maildirs":
        cmd_empty_maildirs(*args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
