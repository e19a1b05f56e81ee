/* Listening sockets: see listen_socket.h. */
#include "listen_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int listen_tcp(const char *key, const char *address, int port, int backlog, char *err,
	       size_t errlen)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		len = sizeof *in4;
	} else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		len = sizeof *in6;
	} else {
		snprintf(err, errlen, "%s: \"%s\" is not an IPv4 or IPv6 address", key, address);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket for %s: %s", key, address, strerror(errno));
		return -1;
	}
	int on = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, backlog) != 0) {
		snprintf(err, errlen, "%s: cannot listen on [%s]:%d: %s", key, address, port,
			 strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int listen_unix_clear_stale(const char *key, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(err, errlen, "%s: %s: longer than a socket path may be", key, path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	struct stat st;
	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s: %s", key, path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s: %s exists and is not a socket", key, path);
		return -1;
	}
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0;
	if (probe >= 0)
		close(probe);
	if (alive) {
		snprintf(err, errlen, "%s: %s: another process is listening there", key, path);
		return -1;
	}
	if (unlink(path) != 0) {
		snprintf(err, errlen, "%s: cannot remove the stale socket %s: %s", key, path,
			 strerror(errno));
		return -1;
	}
	return 0;
}
