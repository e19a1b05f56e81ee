/* Kernel TLS detection. OpenSSL hands a connection's keys to the kernel
 * (SSL_OP_ENABLE_KTLS) only if the kernel has the TLS upper layer; this
 * asks it the same way OpenSSL will, once, at start-up. */
#include "ktls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

bool ktls_ulp_listed(const char *list)
{
	const char *p = list;
	for (int i = 0; i < 64 && p != NULL && *p != '\0'; i++) {
		p += strspn(p, " \t\n");
		size_t len = strcspn(p, " \t\n");
		if (len == 3 && memcmp(p, "tls", 3) == 0)
			return true;
		p += len;
	}
	return false;
}

static bool ulp_file_lists_tls(void)
{
	char buf[256] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
	if (f == NULL)
		return false;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return ktls_ulp_listed(buf);
}

/* TCP_ULP needs an established connection: one over the loopback. */
static int probe_ulp(void)
{
	int err = EINVAL;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int afd = -1;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sin;
	if (lfd < 0 || cfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    listen(lfd, 1) != 0 || getsockname(lfd, (struct sockaddr *)&sin, &len) != 0 ||
	    connect(cfd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    (afd = accept(lfd, NULL, NULL)) < 0) {
		err = errno;
	} else {
		err = setsockopt(cfd, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0 ? 0 : errno;
	}
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);
	if (lfd >= 0)
		close(lfd);
	return err;
}

bool ktls_kernel_offers(char *why, size_t whylen)
{
	int err = probe_ulp();
	if (err == 0 || ulp_file_lists_tls())
		return true;
	if (err == ENOENT)
		snprintf(why, whylen, "the kernel has no TLS upper layer protocol (TCP_ULP \"tls\": "
				      "module tls not available)");
	else
		snprintf(why, whylen, "TCP_ULP \"tls\": %s", strerror(err));
	return false;
}
