"""The Maildir backend: `Mailbox: Maildir` with every user's Maildir below
a MaildirRoot in the test directory. Each user added gets a relative
user.maildir naming its login, and the Maildir is made empty, owned by the
user the daemon runs as, as a mail administrator would make it."""
import os
import shutil

MAILDIR_ROOT = "maildirs"


def maildir_root(t):
    return os.path.join(t.dir, MAILDIR_ROOT)


def owned_dir(t, path, mode=0o700):
    """A directory the daemon's run user owns (User/Group are set when the
    tests run as root)."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if "User" in t.settings:
        shutil.chown(path, t.settings["User"], t.settings.get("Group"))
    return path


def make_maildir(t, login):
    """Creates <root>/<login>/{tmp,new,cur}; returns the user.maildir value."""
    path = os.path.join(maildir_root(t), login)
    for sub in ("", "tmp", "new", "cur"):
        owned_dir(t, os.path.join(path, sub))
    return login


def settings(t):
    owned_dir(t, maildir_root(t), 0o755)
    t.user_maildir = lambda login: make_maildir(t, login)
    return {"Mailbox": "Maildir", "MaildirRoot": maildir_root(t)}


def register(backends):
    backends["maildir"] = settings
