/* MySQL_Server: the database hosts a connection may use, in order of
 * preference. A pure parser (fuzzed: fuzz/fuzz_mysql_hosts.c). */
#ifndef TPOPS_DB_MYSQL_HOSTS_H
#define TPOPS_DB_MYSQL_HOSTS_H
#include <stddef.h>

#define MYSQL_HOSTS_MAX 16

struct mysql_host {
	char *name;        /* NULL: the client library's default (localhost) */
	unsigned int port; /* 0: the client library's default */
};

struct mysql_hosts {
	struct mysql_host host[MYSQL_HOSTS_MAX];
	size_t count;
};

/* Parses "db1 db2:3307 [2001:db8::1]:3306 ..." (separated by spaces, tabs
 * or commas): a name or address, optionally :port; an IPv6 address with a
 * port is written in brackets, one without a port may be bare. A host
 * without a port gets default_port. An empty or NULL spec is one host, the
 * library's default. Returns 0, or -1 with a message in err (and nothing
 * to free). */
int mysql_hosts_parse(const char *spec, unsigned int default_port, struct mysql_hosts *hosts,
		      char *err, size_t errlen);
void mysql_hosts_free(struct mysql_hosts *hosts);

#endif
