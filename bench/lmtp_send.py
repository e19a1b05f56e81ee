"""Deliveries per second over LMTP (RFC 2033): sends every message of a
directory to one recipient, over CONNECTIONS connections kept open (as
Postfix's lmtp(8) with connection caching), each transaction pipelined
(MAIL, RCPT, DATA and the message in one write, then the replies read),
and prints one result line: "deliveries=N seconds=S per_s=R".

    lmtp_send.py SOCKET_PATH RCPT DIR [CONNECTIONS]

A reply that is not 2xx/354 stops the run with the reply (exit 1)."""
import os
import socket
import sys
import threading
import time


def stuffed(msg):
    """The message as DATA carries it: CRLF line ends, dot-stuffed."""
    lines = msg.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(120)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self.expect(b"220")
        self.s.sendall(b"LHLO bench.test\r\n")
        self.expect(b"250")

    def expect(self, code):
        while True:
            line = self.f.readline()
            if not line.startswith(code):
                raise SystemExit(f"lmtp_send: expected {code.decode()}, got {line!r}")
            if line[3:4] != b"-":
                return

    def deliver(self, rcpt, data):
        self.s.sendall(b"MAIL FROM:<bench@bench.test>\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n")
        self.expect(b"250")
        self.expect(b"250")
        self.expect(b"354")
        self.s.sendall(data + b".\r\n")
        self.expect(b"250")

    def close(self):
        try:
            self.s.sendall(b"QUIT\r\n")
            self.expect(b"221")
        finally:
            self.s.close()


def main():
    path, rcpt, d = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
    nconn = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    msgs = []
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            msgs.append(stuffed(f.read()))
    conns = [Conn(path) for _ in range(nconn)]
    errors = []

    def worker(i):
        try:
            for data in msgs[i::nconn]:
                conns[i].deliver(rcpt, data)
        except BaseException as e:  # reported below, the run fails
            errors.append(e)

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nconn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    if errors:
        raise SystemExit(f"lmtp_send: {errors[0]}")
    for c in conns:
        c.close()
    print(f"deliveries={len(msgs)} seconds={seconds:.3f} per_s={len(msgs) / seconds:.1f}")


if __name__ == "__main__":
    main()
