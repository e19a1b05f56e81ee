/* The HAProxy PROXY protocol, version 1 (text) and 2 (binary): the header a
 * load balancer puts at the start of a connection to name the real client.
 * Pure parser, no I/O (fuzzed): give it the bytes received so far.
 *
 * The specification is haproxy's doc/proxy-protocol.txt. A listener that
 * expects the header must not guess whether it is there: anything else at
 * the start of the connection is an error, and the connection is closed. */
#ifndef TPOPS_PROXY_PROTO_H
#define TPOPS_PROXY_PROTO_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Version 1: the line, CRLF included, is at most 107 octets (spec 2.1). */
#define PROXY_V1_MAX 107
/* Version 2: 16 fixed octets, then the address block and TLVs. The spec
 * allows 65535 octets after the fixed part; real senders put addresses and
 * a few TLVs there (SSL, unique id <= 128, cloud ids). More than this is
 * refused, so that a session never buffers more than PROXY_HEADER_MAX. */
#define PROXY_V2_FIXED 16
#define PROXY_V2_MAX_PAYLOAD 4096
/* The most a caller ever has to buffer before proxy_parse decides. */
#define PROXY_HEADER_MAX (PROXY_V2_FIXED + PROXY_V2_MAX_PAYLOAD)

enum proxy_status {
	PROXY_NEED_MORE, /* a valid beginning: read more and call again */
	PROXY_ERROR,     /* not a valid header: close the connection */
	PROXY_DONE,      /* a whole valid header of header_len octets */
};

struct proxy_header {
	size_t header_len; /* PROXY_DONE: octets to drop from the stream */
	int version;       /* 1 or 2 */
	/* 0: src and dst are the addresses the proxy names. 1: the proxy
	 * gives none (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC or AF_UNIX): keep the
	 * socket's own addresses. */
	int local;
	struct sockaddr_storage src, dst; /* AF_INET or AF_INET6, with ports */
	socklen_t src_len, dst_len;       /* 0 when local */
	const char *reason;               /* PROXY_ERROR: static English text */
};

/* Parses the start of a connection: data[0..len) is everything received so
 * far. NEED_MORE means the octets are a valid beginning of a header but not
 * a whole one (the caller reads more, up to PROXY_HEADER_MAX, and calls
 * again with all of them). Decides as soon as the octets allow: a wrong
 * first octet is an error at once. Fills *out on DONE (and out->reason on
 * ERROR); the octets after header_len are the client's. */
enum proxy_status proxy_parse(const void *data, size_t len, struct proxy_header *out);

#endif
