"""TLS session resumption with tickets: a client that comes back with the
ticket of its last connection is resumed (Python's ssl says so with
session_reused), on POP3S and after STLS, with TLS 1.3 and 1.2, across a
SIGHUP (a new SSL_CTX, the same ticket keys), and not any more once the
ticket's key has rotated out (TLS_TicketKeyLifetime)."""
import os
import shutil
import signal
import ssl
import tempfile
import time

import pytest

from conftest import make_dir
from pop3tls import HOST, Daemon, Pop3, cert, client_context, tls_settings  # noqa: F401

MESSAGE = b"From: a@example.com\r\nSubject: resumed\r\n\r\nbody\r\n"


def make_daemon(cert, name, **more):
    d = Daemon(name, [("--plain", "rita", "pw", "rita@example.com")],
               **tls_settings(cert, **more))
    d.t.store("rita@example.com", MESSAGE)
    return d


@pytest.fixture(scope="module")
def srv(cert):
    d = make_daemon(cert, "resume")
    yield d.t
    d.finish()


def pop3s(t, ctx, session=None):
    """A POP3S connection offering session; the greeting is read, so that
    a TLS 1.3 ticket (sent after the handshake) has arrived."""
    c = Pop3.__new__(Pop3)
    import socket
    raw = socket.create_connection((HOST, t.settings["TLS_Port"]), timeout=15)
    c.sock = ctx.wrap_socket(raw, server_hostname="tpops.test", session=session)
    c.buf = b""
    c.greeting = c.line()
    assert c.greeting.startswith(b"+OK"), c.greeting
    return c


def stls(t, ctx, session=None):
    c = Pop3(t.port)
    assert c.cmd("STLS").startswith(b"+OK")
    c.sock = ctx.wrap_socket(c.sock, server_hostname="tpops.test", session=session)
    return c


def full_session(c):
    """Logs in and reads the message: the resumed connection really works."""
    assert c.cmd("USER rita").startswith(b"+OK")
    assert c.cmd("PASS pw").startswith(b"+OK")
    assert c.cmd("RETR 1").startswith(b"+OK")
    assert b"\r\n".join(c.multiline()) + b"\r\n" == MESSAGE
    assert c.cmd("QUIT").startswith(b"+OK")
    c.sock.close()


def ticket(c):
    """The session to offer next time; CAPA first so that the ticket the
    server sent after the handshake has been read."""
    assert c.cmd("CAPA").startswith(b"+OK")
    c.multiline()
    s = c.sock.session
    assert s is not None and s.has_ticket, "the server issued no ticket"
    return s


def ctx_for(cert, version):
    ctx = client_context(cert)
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_pop3s_resumes(srv, cert, version):
    ctx = ctx_for(cert, version)
    first = pop3s(srv, ctx)
    assert not first.sock.session_reused
    s = ticket(first)
    full_session(first)
    again = pop3s(srv, ctx, session=s)
    assert again.sock.session_reused, "the ticket was not accepted"
    s2 = ticket(again)  # a resumed session gets a new ticket too
    full_session(again)
    third = pop3s(srv, ctx, session=s2)
    assert third.sock.session_reused, "the ticket of a resumed session was not accepted"
    full_session(third)


def test_stls_resumes(srv, cert):
    ctx = ctx_for(cert, ssl.TLSVersion.TLSv1_3)
    first = stls(srv, ctx)
    s = ticket(first)
    first.sock.close()
    again = stls(srv, ctx, session=s)
    assert again.sock.session_reused
    full_session(again)


def test_a_bad_ticket_is_a_full_handshake(srv, cert, tmp_path):
    """A ticket from another server (another key) is not an error: the
    client gets a full handshake."""
    other = make_daemon(cert, "other")
    try:
        ctx = ctx_for(cert, ssl.TLSVersion.TLSv1_3)
        foreign = ticket(pop3s(other.t, ctx))
    finally:
        other.finish()
    c = pop3s(srv, ctx, session=foreign)
    assert not c.sock.session_reused
    full_session(c)


@pytest.fixture
def reloadable_cert(cert):
    """The certificate where the daemon can read it again after dropping
    its privileges (a reload reads it as the run user)."""
    d = make_dir(tempfile.mkdtemp(prefix="tpops-cert-", dir="/tmp"))
    copies = []
    for path in cert:
        copy = os.path.join(d, os.path.basename(path))
        shutil.copy(path, copy)
        os.chmod(copy, 0o644)
        copies.append(copy)
    yield tuple(copies)
    shutil.rmtree(d, ignore_errors=True)


def test_resumes_across_sighup(reloadable_cert):
    cert = reloadable_cert
    d = make_daemon(cert, "reload")
    try:
        resume_across_sighup(d.t, cert)
    finally:
        d.finish()


def resume_across_sighup(srv, cert):
    ctx = ctx_for(cert, ssl.TLSVersion.TLSv1_3)
    first = pop3s(srv, ctx)
    s = ticket(first)
    full_session(first)
    before = srv.read_log().count("configuration reloaded from")
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 20
    while srv.read_log().count("configuration reloaded from") == before:
        assert "reload refused" not in srv.read_log(), srv.read_log()
        assert time.time() < deadline, "no reload:\n" + srv.read_log()
        time.sleep(0.05)
    again = pop3s(srv, ctx, session=s)
    assert again.sock.session_reused, "a reload lost the ticket keys"
    full_session(again)
    srv.assert_alive()


def test_ticket_keys_rotate(cert):
    """TLS_TicketKeyLifetime: 3. A ticket still opens one lifetime later
    (its key is then the previous one), and after two lifetimes without
    any handshake both keys are gone: a full handshake."""
    d = make_daemon(cert, "rotate", TLS_TicketKeyLifetime=3)
    try:
        ctx = ctx_for(cert, ssl.TLSVersion.TLSv1_3)
        first = pop3s(d.t, ctx)  # the first handshake makes the first key
        a = ticket(first)
        first.sock.close()
        time.sleep(4)  # the key is between one and two lifetimes old
        second = pop3s(d.t, ctx, session=a)
        assert second.sock.session_reused, "a ticket under the previous key was refused"
        b = ticket(second)  # under the key this handshake made
        second.sock.close()
        time.sleep(6.5)  # two lifetimes and more: every key is gone
        third = pop3s(d.t, ctx, session=b)
        assert not third.sock.session_reused, "a ticket outlived two key lifetimes"
        full_session(third)
    finally:
        d.finish()


def test_start_log_says_which_tls_path(srv):
    """One line at start says who encrypts the records: the kernel (kTLS)
    where it offers TCP_ULP "tls", OpenSSL in user space elsewhere, with
    the reason. It follows what the kernel lists (read after the daemon
    asked, since asking as root may load the module)."""
    log = srv.read_log()
    kernel = [l for l in log.splitlines() if "TLS: kernel TLS (kTLS)" in l]
    user = [l for l in log.splitlines() if "TLS: records are encrypted in user space" in l]
    assert len(kernel) + len(user) == 1, log
    with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
        listed = "tls" in f.read().split()
    if listed:
        assert kernel, log
    else:
        assert user and "no kernel TLS:" in user[0], log
