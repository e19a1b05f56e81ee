"""A private Dovecot POP3 server (Debian's dovecot-pop3d) for the import
tests: its own dovecot.conf, base_dir and log in a test directory, a
passwd-file, Maildirs owned by the user tpops runs as, a free port. As
bench/run.sh starts it, minus the load settings."""
import os
import shutil
import socket
import subprocess
import time

from conftest import IS_ROOT, RUN_USER, free_port


def available():
    return shutil.which("dovecot") is not None and IS_ROOT


class Dovecot:
    def __init__(self, directory, passwd_lines):
        self.dir = directory
        os.makedirs(os.path.join(directory, "run"), exist_ok=True)
        os.makedirs(os.path.join(directory, "state"), exist_ok=True)
        self.port = free_port()
        self.passwd = os.path.join(directory, "dovecot.passwd")
        with open(self.passwd, "w") as f:
            f.write("".join(line + "\n" for line in passwd_lines))
        os.chmod(self.passwd, 0o644)
        self.conf = os.path.join(directory, "dovecot.conf")
        self.log = os.path.join(directory, "dovecot.log")
        with open(self.conf, "w") as f:
            f.write(f"""# tpops import tests: a private Dovecot
base_dir = {directory}/run
state_dir = {directory}/state
instance_name = tpops-import-test-{self.port}
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
log_path = {self.log}
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {self.passwd}
}}
userdb {{
  driver = passwd-file
  args = {self.passwd}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
""")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited:\n" + self.read_log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    if s.recv(512).startswith(b"+OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("dovecot did not start:\n" + self.read_log())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def run_user_ids():
    import pwd
    pw = pwd.getpwnam(RUN_USER)
    return pw.pw_uid, pw.pw_gid
