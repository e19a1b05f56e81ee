/* systemd socket activation (sd_listen_fds protocol) without libsystemd. */
#include "sd_listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A decimal number without sign, spaces or leading zero, at most max. */
static bool parse_number(const char *s, long max, long *out)
{
	if (s == NULL || s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] != '\0'))
		return false;
	long v = 0;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

/* Fills family, port, stream and listening from the socket itself. */
static int describe(struct sd_listen_socket *s, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int type = 0, acc = 0;
	socklen_t optlen = sizeof type;
	if (getsockopt(s->fd, SOL_SOCKET, SO_TYPE, &type, &optlen) != 0) {
		snprintf(err, errlen, "socket activation: fd %d%s%s: not a socket (%s)", s->fd,
			 s->name[0] ? " " : "", s->name, strerror(errno));
		return -1;
	}
	optlen = sizeof acc;
	if (getsockopt(s->fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &optlen) != 0)
		acc = 0;
	memset(&ss, 0, sizeof ss);
	if (getsockname(s->fd, (struct sockaddr *)&ss, &len) != 0) {
		snprintf(err, errlen, "socket activation: fd %d: getsockname: %s", s->fd,
			 strerror(errno));
		return -1;
	}
	s->family = ss.ss_family;
	s->port = -1;
	if (ss.ss_family == AF_INET)
		s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6)
		s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	s->stream = type == SOCK_STREAM;
	s->listening = acc != 0;
	return 0;
}

int sd_listen_fds_from(const char *listen_pid, const char *listen_fds,
		       const char *listen_fdnames, pid_t self, int first_fd,
		       struct sd_listen_socket **out, char *err, size_t errlen)
{
	*out = NULL;
	if (listen_pid == NULL && listen_fds == NULL)
		return 0; /* not socket-activated */
	long pid, n;
	if (!parse_number(listen_pid, 0x7FFFFFFF, &pid)) {
		snprintf(err, errlen, "socket activation: LISTEN_PID is not a process id");
		return -1;
	}
	if (pid != (long)self)
		return 0; /* meant for another process (our parent's, say) */
	if (!parse_number(listen_fds, 0x7FFFFFFF, &n)) {
		snprintf(err, errlen, "socket activation: LISTEN_FDS is not a number");
		return -1;
	}
	if (n == 0)
		return 0;
	if (n > SD_LISTEN_FDS_MAX) {
		snprintf(err, errlen, "socket activation: LISTEN_FDS=%ld, more than %d sockets",
			 n, SD_LISTEN_FDS_MAX);
		return -1;
	}
	struct sd_listen_socket *s = calloc((size_t)n, sizeof *s);
	if (s == NULL) {
		snprintf(err, errlen, "socket activation: out of memory");
		return -1;
	}
	/* LISTEN_FDNAMES: n names separated by ':'; systemd always sends n of
	 * them. A list of another length is not trusted at all. */
	if (listen_fdnames != NULL) {
		long count = 1;
		for (const char *p = listen_fdnames; *p != '\0'; p++)
			count += *p == ':';
		if (count == n) {
			const char *p = listen_fdnames;
			for (long i = 0; i < n; i++) {
				size_t m = strcspn(p, ":");
				if (m >= sizeof s[i].name)
					m = sizeof s[i].name - 1;
				memcpy(s[i].name, p, m);
				s[i].name[m] = '\0';
				p += strcspn(p, ":");
				if (*p == ':')
					p++;
			}
		}
	}
	for (long i = 0; i < n; i++) {
		s[i].fd = first_fd + (int)i;
		int flags = fcntl(s[i].fd, F_GETFD);
		if (flags < 0 || fcntl(s[i].fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
			snprintf(err, errlen, "socket activation: fd %d: %s", s[i].fd,
				 strerror(errno));
			free(s);
			return -1;
		}
		if (describe(&s[i], err, errlen) != 0) {
			free(s);
			return -1;
		}
	}
	*out = s;
	return (int)n;
}

int sd_listen_fds(bool unset_env, struct sd_listen_socket **out, char *err, size_t errlen)
{
	int n = sd_listen_fds_from(getenv("LISTEN_PID"), getenv("LISTEN_FDS"),
				   getenv("LISTEN_FDNAMES"), getpid(), SD_LISTEN_FDS_START, out,
				   err, errlen);
	if (unset_env) {
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
	}
	return n;
}

bool sd_listen_is_tls(const struct sd_listen_socket *s, int tls_port)
{
	if (strcmp(s->name, "pop3s") == 0)
		return true;
	if (strcmp(s->name, "pop3") == 0)
		return false;
	int port = tls_port < 0 ? 995 : tls_port;
	return port > 0 && s->port == port;
}
