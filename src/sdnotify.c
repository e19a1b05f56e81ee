/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int sdnotify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (path == NULL || path[0] == '\0')
		return 0;
	struct sockaddr_un addr;
	memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	size_t n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n < 2 || n >= sizeof addr.sun_path) {
		errno = EINVAL;
		return -1;
	}
	memcpy(addr.sun_path, path, n);
	if (path[0] == '@')
		addr.sun_path[0] = '\0'; /* abstract namespace: no trailing NUL counted */
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);

	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	ssize_t sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr, len);
	int saved = errno;
	close(fd);
	if (sent < 0 || (size_t)sent != strlen(state)) {
		errno = sent < 0 ? saved : EMSGSIZE;
		return -1;
	}
	return 0;
}

static int with_status(const char *first, const char *status)
{
	if (status == NULL)
		return sdnotify(first);
	char msg[512];
	/* a status is one line: cut it at a newline */
	int n = snprintf(msg, sizeof msg, "%s\nSTATUS=%.*s", first, (int)strcspn(status, "\n"),
			 status);
	if (n < 0)
		return -1;
	return sdnotify(msg);
}

int sdnotify_ready(const char *status)
{
	return with_status("READY=1", status);
}

int sdnotify_reloading(void)
{
	/* systemd >= 253 (Type=notify-reload) wants the CLOCK_MONOTONIC time
	 * with RELOADING=1; older ones ignore it. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	char msg[64];
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	return sdnotify(msg);
}

int sdnotify_stopping(void)
{
	return sdnotify("STOPPING=1");
}

int sdnotify_status(const char *status)
{
	char msg[512];
	snprintf(msg, sizeof msg, "STATUS=%.*s", (int)strcspn(status, "\n"), status);
	return sdnotify(msg);
}
