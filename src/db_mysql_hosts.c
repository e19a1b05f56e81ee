/* MySQL_Server: a list of database hosts (see db_mysql_hosts.h). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_mysql_hosts.h"
#include "xalloc.h"

static int parse_port(const char *p, size_t len, unsigned int *port)
{
	if (len == 0 || len > 5)
		return -1;
	unsigned long v = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*port = (unsigned int)v;
	return 0;
}

/* One item: host, host:port, [v6]:port, [v6], or a bare v6 address. */
static int parse_item(const char *p, size_t len, unsigned int default_port,
		      struct mysql_host *h)
{
	const char *name = p;
	size_t name_len = len;
	unsigned int port = default_port;
	if (p[0] == '[') {
		const char *close = memchr(p, ']', len);
		if (close == NULL || close == p + 1)
			return -1;
		name = p + 1;
		name_len = (size_t)(close - name);
		size_t rest = len - (size_t)(close + 1 - p);
		if (rest > 0 && (close[1] != ':' || parse_port(close + 2, rest - 1, &port) != 0))
			return -1;
	} else {
		const char *colon = memchr(p, ':', len);
		/* one colon: host:port; more: a bare IPv6 address */
		if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - p)) == NULL) {
			name_len = (size_t)(colon - p);
			if (name_len == 0 ||
			    parse_port(colon + 1, len - name_len - 1, &port) != 0)
				return -1;
		}
	}
	for (size_t i = 0; i < name_len; i++)
		if (name[i] == '[' || name[i] == ']' || (unsigned char)name[i] < 0x21 ||
		    (unsigned char)name[i] == 0x7f)
			return -1;
	h->name = xstrndup(name, name_len);
	h->port = port;
	return 0;
}

static bool is_separator(char c)
{
	return c == ' ' || c == '\t' || c == ',';
}

int mysql_hosts_parse(const char *spec, unsigned int default_port, struct mysql_hosts *hosts,
		      char *err, size_t errlen)
{
	memset(hosts, 0, sizeof *hosts);
	const char *p = spec ? spec : "";
	while (*p != '\0') {
		while (is_separator(*p))
			p++;
		if (*p == '\0')
			break;
		const char *start = p;
		while (*p != '\0' && !is_separator(*p))
			p++;
		size_t len = (size_t)(p - start);
		if (hosts->count == MYSQL_HOSTS_MAX) {
			snprintf(err, errlen, "MySQL_Server: more than %d hosts", MYSQL_HOSTS_MAX);
			mysql_hosts_free(hosts);
			return -1;
		}
		if (parse_item(start, len, default_port, &hosts->host[hosts->count]) != 0) {
			snprintf(err, errlen,
				 "MySQL_Server: \"%.*s\" is not a host, host:port or [address]:port",
				 len > 200 ? 200 : (int)len, start);
			mysql_hosts_free(hosts);
			return -1;
		}
		hosts->count++;
	}
	if (hosts->count == 0) {
		hosts->host[0] = (struct mysql_host){NULL, default_port};
		hosts->count = 1;
	}
	return 0;
}

void mysql_hosts_free(struct mysql_hosts *hosts)
{
	for (size_t i = 0; i < hosts->count; i++)
		free(hosts->host[i].name);
	memset(hosts, 0, sizeof *hosts);
}
