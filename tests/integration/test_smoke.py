"""The shortest path through the product: add a user, store a message,
read it with Python's poplib."""
import poplib


def test_store_and_retrieve(tpops):
    tpops.store("alice@example.com", b"Subject: hello\n\nworld\n")
    p = poplib.POP3("127.0.0.1", tpops.port, timeout=10)
    p.user("alice")
    assert p.pass_("secret").startswith(b"+OK")
    assert p.stat() == (1, len(b"Subject: hello\r\n\r\nworld\r\n"))
    _, lines, octets = p.retr(1)
    assert lines == [b"Subject: hello", b"", b"world"]
    assert p.quit().startswith(b"+OK")
