/* systemd socket activation without libsystemd: the sd_listen_fds(3)
 * protocol. systemd (or systemd-socket-activate, or any manager speaking
 * the protocol) opens the listening sockets and starts the daemon with
 *   LISTEN_PID=<the daemon's pid>  LISTEN_FDS=<n>  LISTEN_FDNAMES=a:b:...
 * and the sockets as file descriptors 3 .. 3+n-1, in the order of the
 * ListenStream= lines of the .socket unit. */
#ifndef TPOPS_SD_LISTEN_H
#define TPOPS_SD_LISTEN_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SD_LISTEN_FDS_START 3
/* More sockets than this is not a tpops socket unit (and bounds the
 * allocation against a corrupt environment). */
#define SD_LISTEN_FDS_MAX 64

struct sd_listen_socket {
	int fd;
	char name[256]; /* FileDescriptorName= of the unit; "" when not given */
	int family;     /* AF_INET, AF_INET6, AF_UNIX... (getsockname) */
	int port;       /* local port for AF_INET/AF_INET6, else -1 */
	bool stream;    /* SOCK_STREAM */
	bool listening; /* SO_ACCEPTCONN: a listening socket (not Accept=yes) */
};

/* Takes the sockets passed by the service manager, if any. Returns how
 * many (0: not socket-activated, or the variables are for another process
 * because LISTEN_PID is not ours), filling a malloc'd array in *out (free
 * it; the fds are the caller's). -1 with a message in err when the
 * variables are malformed or a passed fd is not open. Marks every passed fd
 * close-on-exec. When unset_env is true the three variables are removed
 * from the environment whatever the outcome, so that no child inherits
 * them. Call it before forking (daemon(3) changes the pid). */
int sd_listen_fds(bool unset_env, struct sd_listen_socket **out, char *err, size_t errlen);

/* The same from explicit values, for tests: the variables' values (NULL
 * when unset), the process's pid and the first descriptor number. */
int sd_listen_fds_from(const char *listen_pid, const char *listen_fds,
		       const char *listen_fdnames, pid_t self, int first_fd,
		       struct sd_listen_socket **out, char *err, size_t errlen);

/* What a passed socket is for tpops: POP3S when its name is "pop3s" or,
 * unnamed or otherwise named, when its local port is TLS_Port; POP3
 * otherwise. tls_port is TLS_Port as configured: -1 (not set) stands for
 * 995 here, whether or not a certificate is set, so that a socket on 995
 * is never served as plain text; 0 (off) matches no port. */
bool sd_listen_is_tls(const struct sd_listen_socket *s, int tls_port);

#endif
