"""Shared by test_tls.py, test_sasl.py and test_limits.py: a self-signed
certificate made once per test session, module-scoped daemons, and a raw
POP3 client that can bind its source address and switch to TLS (STLS) or
start in it (POP3S)."""
import base64
import os
import shutil
import socket
import ssl
import subprocess
import tempfile

import pytest

from conftest import Tpops, free_port, make_dir

HOST = "127.0.0.1"


@pytest.fixture(scope="session")
def cert():
    """(cert path, key path): a fresh self-signed certificate for
    tpops.test and 127.0.0.1. When the tests run as root the directory is
    root's alone (0700, key 0600): the daemon must read the key before it
    drops to nobody."""
    d = tempfile.mkdtemp(prefix="tpops-cert-")
    os.chmod(d, 0o700)
    crt, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=tpops.test", "-days", "2",
                    "-addext", "subjectAltName=DNS:tpops.test,IP:127.0.0.1",
                    "-keyout", key, "-out", crt],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    yield crt, key
    shutil.rmtree(d, ignore_errors=True)


def tls_settings(cert, **more):
    crt, key = cert
    s = {"TLS_Cert": crt, "TLS_Key": key, "TLS_Port": free_port()}
    s.update(more)
    return s


def client_context(cert, **versions):
    """A client context that verifies the daemon's certificate (so the
    tests know they talk to the configured certificate, not just any)."""
    ctx = ssl.create_default_context(cafile=cert[0])
    for k, v in versions.items():
        setattr(ctx, k, v)
    return ctx


class Daemon:
    """A module-scoped daemon (Tpops) in a directory nobody can use; stop()
    fails the module if it crashed or a sanitizer reported anything."""

    def __init__(self, name, users=(), **settings):
        self.base = make_dir(tempfile.mkdtemp(prefix="tpops-test-", dir="/tmp"))
        self.t = Tpops(os.path.join(self.base, name), **settings)
        for args in users:
            self.t.tool("tpops-useradd", *args)
        self.t.start()

    def finish(self):
        t = self.t
        alive = t.proc is not None and t.proc.poll() is None
        t.stop()
        log = t.read_log()
        shutil.rmtree(self.base, ignore_errors=True)
        assert alive, "tpops died:\n" + log
        assert "ERROR: AddressSanitizer" not in log, log
        assert "runtime error:" not in log, log


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


class Pop3:
    """A raw POP3 client. source: the local address to bind (any of
    127.0.0.0/8 works on Linux); tls: a context for implicit TLS."""

    def __init__(self, port, host=HOST, source=None, tls=None, timeout=15, greeting=True):
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="tpops.test")
        self.buf = b""
        self.greeting = self.line() if greeting else None

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; got " + repr(self.buf))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def multiline(self):
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def cmd(self, command):
        self.send((command.encode() if isinstance(command, str) else command) + b"\r\n")
        return self.line()

    def capa(self):
        reply = self.cmd("CAPA")
        assert reply.startswith(b"+OK"), reply
        return [l.decode() for l in self.multiline()]

    def starttls(self, ctx):
        reply = self.cmd("STLS")
        assert reply.startswith(b"+OK"), reply
        assert self.buf == b"", self.buf  # nothing else came in the clear
        self.sock = ctx.wrap_socket(self.sock, server_hostname="tpops.test")
        return reply

    def login(self, user, password):
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        return self.cmd(f"PASS {password}")

    def rest(self, timeout=5):
        """Everything until the server closes the connection."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except ConnectionResetError:
            return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sasl_line(reply):
    """The decoded data of a "+ base64" continuation."""
    assert reply.startswith(b"+ ") or reply == b"+", reply
    return base64.b64decode(reply[2:])
