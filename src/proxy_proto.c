/* The HAProxy PROXY protocol header, v1 and v2: bytes -> addresses. Pure. */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

static const unsigned char v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_prefix[] = "PROXY ";
#define V1_PREFIX_LEN (sizeof v1_prefix - 1)

/* v2 byte 13: version (high nibble) and command (low nibble) */
#define V2_VERSION 0x2
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
/* v2 byte 14: address family (high nibble) and transport (low nibble) */
#define V2_UNSPEC 0x00
#define V2_TCP4 0x11
#define V2_UDP4 0x12
#define V2_TCP6 0x21
#define V2_UDP6 0x22
#define V2_UNIX_STREAM 0x31
#define V2_UNIX_DGRAM 0x32
#define V2_ADDR_LEN_INET 12  /* 2 * 4 + 2 * 2 */
#define V2_ADDR_LEN_INET6 36 /* 2 * 16 + 2 * 2 */
#define V2_ADDR_LEN_UNIX 216 /* 2 * 108 */
#define V2_TLV_CRC32C 0x03
#define V2_TLV_HEADER 3 /* type, length (2 octets, big endian) */

static enum proxy_status fail(struct proxy_header *out, const char *reason)
{
	out->reason = reason;
	return PROXY_ERROR;
}

/* ---- version 1 ------------------------------------------------------ */

/* One field of the v1 line, not NUL-terminated. */
struct field {
	const char *p;
	size_t n;
};

/* A decimal number of 1 to 5 digits, no leading zero, at most max. */
static bool parse_decimal(struct field f, unsigned max, unsigned *out)
{
	if (f.n == 0 || f.n > 5 || (f.n > 1 && f.p[0] == '0'))
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < f.n; i++) {
		if (f.p[i] < '0' || f.p[i] > '9')
			return false;
		v = v * 10 + (unsigned)(f.p[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* Exactly four decimal numbers 0..255 separated by single dots, no leading
 * zeroes (spec 2.1: no confusion with octal). */
static bool parse_v1_ipv4(struct field f, struct in_addr *out)
{
	unsigned char octets[4];
	size_t start = 0;
	for (int i = 0; i < 4; i++) {
		size_t end = start;
		while (end < f.n && f.p[end] != '.')
			end++;
		if ((i < 3) != (end < f.n))
			return false; /* too few or too many dots */
		unsigned v;
		if (end - start > 3 || !parse_decimal((struct field){f.p + start, end - start}, 255, &v))
			return false;
		octets[i] = (unsigned char)v;
		start = end + 1;
	}
	memcpy(&out->s_addr, octets, 4);
	return true;
}

/* Hex groups, colons, one "::" at most (and, as inet_pton allows, a dotted
 * IPv4 tail): whatever inet_pton takes, made of those characters only. */
static bool parse_v1_ipv6(struct field f, struct in6_addr *out)
{
	char text[INET6_ADDRSTRLEN];
	if (f.n == 0 || f.n >= sizeof text)
		return false;
	for (size_t i = 0; i < f.n; i++) {
		char c = f.p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
		      c == ':' || c == '.'))
			return false;
	}
	memcpy(text, f.p, f.n);
	text[f.n] = '\0';
	return inet_pton(AF_INET6, text, out) == 1;
}

static void set_inet(struct sockaddr_storage *ss, socklen_t *len, const struct in_addr *a,
		     uint16_t port_be)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof *ss);
	sin->sin_family = AF_INET;
	sin->sin_addr = *a;
	sin->sin_port = port_be;
	*len = sizeof *sin;
}

static void set_inet6(struct sockaddr_storage *ss, socklen_t *len, const struct in6_addr *a,
		      uint16_t port_be)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof *ss);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_addr = *a;
	sin6->sin6_port = port_be;
	*len = sizeof *sin6;
}

/* The line after "PROXY " and before CRLF. */
static enum proxy_status parse_v1_line(const char *s, size_t n, struct proxy_header *out)
{
	if (n >= 7 && memcmp(s, "UNKNOWN", 7) == 0) {
		/* "the receiver must ignore anything presented before the CRLF" */
		if (n > 7 && s[7] != ' ')
			return fail(out, "PROXY v1: unknown protocol (TCP4, TCP6 or UNKNOWN expected)");
		out->local = 1;
		return PROXY_DONE;
	}
	bool v6;
	if (n >= 5 && memcmp(s, "TCP4 ", 5) == 0)
		v6 = false;
	else if (n >= 5 && memcmp(s, "TCP6 ", 5) == 0)
		v6 = true;
	else
		return fail(out, "PROXY v1: unknown protocol (TCP4, TCP6 or UNKNOWN expected)");

	/* exactly four fields, each separated by exactly one space */
	struct field f[4];
	size_t pos = 5;
	for (int i = 0; i < 4; i++) {
		size_t end = pos;
		while (end < n && s[end] != ' ')
			end++;
		if (end == pos)
			return fail(out, "PROXY v1: empty field (one space between fields)");
		if ((i < 3) != (end < n))
			return fail(out, "PROXY v1: wrong number of fields "
					 "(source, destination, source port, destination port)");
		f[i] = (struct field){s + pos, end - pos};
		pos = end + 1;
	}
	unsigned sport, dport;
	if (!parse_decimal(f[2], 65535, &sport) || !parse_decimal(f[3], 65535, &dport))
		return fail(out, "PROXY v1: bad port (0-65535, no leading zero)");
	if (v6) {
		struct in6_addr a, b;
		if (!parse_v1_ipv6(f[0], &a) || !parse_v1_ipv6(f[1], &b))
			return fail(out, "PROXY v1: bad IPv6 address");
		set_inet6(&out->src, &out->src_len, &a, htons((uint16_t)sport));
		set_inet6(&out->dst, &out->dst_len, &b, htons((uint16_t)dport));
	} else {
		struct in_addr a, b;
		if (!parse_v1_ipv4(f[0], &a) || !parse_v1_ipv4(f[1], &b))
			return fail(out, "PROXY v1: bad IPv4 address (dotted quad, no leading zero)");
		set_inet(&out->src, &out->src_len, &a, htons((uint16_t)sport));
		set_inet(&out->dst, &out->dst_len, &b, htons((uint16_t)dport));
	}
	return PROXY_DONE;
}

/* The protocol names that may follow "PROXY "; a partial one is checked
 * against them so that junk is refused before the line is complete. */
static bool v1_protocol_prefix_ok(const char *s, size_t n)
{
	static const char *const protos[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
	for (size_t i = 0; i < sizeof protos / sizeof protos[0]; i++) {
		size_t m = strlen(protos[i]);
		if (memcmp(s, protos[i], n < m ? n : m) == 0)
			return true;
	}
	return false;
}

static enum proxy_status parse_v1(const unsigned char *d, size_t len, struct proxy_header *out)
{
	out->version = 1;
	size_t limit = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
	for (size_t i = 0; i < limit; i++) {
		unsigned char c = d[i];
		if (i < V1_PREFIX_LEN) {
			if (c != (unsigned char)v1_prefix[i])
				return fail(out, "no PROXY protocol header");
			continue;
		}
		if (c == '\r') {
			if (i + 1 >= PROXY_V1_MAX)
				break; /* the LF would be octet 108 */
			if (i + 1 == len)
				return PROXY_NEED_MORE;
			if (d[i + 1] != '\n')
				return fail(out, "PROXY v1: CR without LF");
			const char *line = (const char *)d + V1_PREFIX_LEN;
			size_t n = i - V1_PREFIX_LEN;
			if (!v1_protocol_prefix_ok(line, n))
				return fail(out, "PROXY v1: unknown protocol (TCP4, TCP6 or UNKNOWN expected)");
			enum proxy_status st = parse_v1_line(line, n, out);
			if (st == PROXY_DONE)
				out->header_len = i + 2;
			return st;
		}
		if (c == '\n')
			return fail(out, "PROXY v1: LF without CR");
		if (c < 0x20 || c > 0x7E)
			return fail(out, "PROXY v1: a control or non-ASCII octet in the line");
		if (!v1_protocol_prefix_ok((const char *)d + V1_PREFIX_LEN, i + 1 - V1_PREFIX_LEN))
			return fail(out, "PROXY v1: unknown protocol (TCP4, TCP6 or UNKNOWN expected)");
	}
	if (len >= PROXY_V1_MAX)
		return fail(out, "PROXY v1: no CRLF within 107 octets");
	return PROXY_NEED_MORE;
}

/* ---- version 2 ------------------------------------------------------ */

static uint32_t crc32c_update(uint32_t crc, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return crc;
}

/* PP2_TYPE_CRC32C (spec 2.2.3): the CRC32c of the whole header with the
 * checksum's own four octets taken as zero. */
static bool crc32c_matches(const unsigned char *hdr, size_t total, size_t value_at)
{
	static const unsigned char zero[4] = {0};
	uint32_t crc = 0xFFFFFFFFu;
	crc = crc32c_update(crc, hdr, value_at);
	crc = crc32c_update(crc, zero, 4);
	crc = crc32c_update(crc, hdr + value_at + 4, total - value_at - 4);
	crc = ~crc;
	uint32_t want = (uint32_t)hdr[value_at] << 24 | (uint32_t)hdr[value_at + 1] << 16 |
			(uint32_t)hdr[value_at + 2] << 8 | hdr[value_at + 3];
	return crc == want;
}

/* The TLVs from offset `at` to the end of the header must tile it exactly. */
static enum proxy_status check_tlvs(const unsigned char *d, size_t at, size_t total,
				    struct proxy_header *out)
{
	while (at < total) {
		if (total - at < V2_TLV_HEADER)
			return fail(out, "PROXY v2: truncated TLV");
		size_t vlen = (size_t)d[at + 1] << 8 | d[at + 2];
		if (vlen > total - at - V2_TLV_HEADER)
			return fail(out, "PROXY v2: TLV longer than the header");
		if (d[at] == V2_TLV_CRC32C) {
			if (vlen != 4)
				return fail(out, "PROXY v2: CRC32C TLV is not 4 octets");
			if (!crc32c_matches(d, total, at + V2_TLV_HEADER))
				return fail(out, "PROXY v2: CRC32C checksum mismatch");
		}
		at += V2_TLV_HEADER + vlen;
	}
	return PROXY_DONE;
}

static enum proxy_status parse_v2(const unsigned char *d, size_t len, struct proxy_header *out)
{
	out->version = 2;
	size_t n = len < sizeof v2_signature ? len : sizeof v2_signature;
	if (memcmp(d, v2_signature, n) != 0)
		return fail(out, "no PROXY protocol header");
	if (len < 13)
		return PROXY_NEED_MORE;
	if (d[12] >> 4 != V2_VERSION)
		return fail(out, "PROXY v2: version is not 2");
	unsigned cmd = d[12] & 0x0F;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return fail(out, "PROXY v2: command is neither LOCAL nor PROXY");
	if (len < 14)
		return PROXY_NEED_MORE;
	unsigned fam = d[13];
	size_t addr_len;
	switch (fam) {
	case V2_UNSPEC:
		addr_len = 0;
		break;
	case V2_TCP4:
	case V2_UDP4:
		addr_len = V2_ADDR_LEN_INET;
		break;
	case V2_TCP6:
	case V2_UDP6:
		addr_len = V2_ADDR_LEN_INET6;
		break;
	case V2_UNIX_STREAM:
	case V2_UNIX_DGRAM:
		addr_len = V2_ADDR_LEN_UNIX;
		break;
	default:
		return fail(out, "PROXY v2: unknown address family or transport");
	}
	/* A POP3 connection is a stream: a proxied datagram flow is nonsense
	 * (LOCAL ignores the family, as the spec says). */
	if (cmd == V2_CMD_PROXY && (fam & 0x0F) == 0x2)
		return fail(out, "PROXY v2: datagram transport on a stream listener");
	if (len < PROXY_V2_FIXED)
		return PROXY_NEED_MORE;
	size_t plen = (size_t)d[14] << 8 | d[15];
	if (plen > PROXY_V2_MAX_PAYLOAD)
		return fail(out, "PROXY v2: header longer than tpops accepts");
	if (cmd == V2_CMD_PROXY && plen < addr_len)
		return fail(out, "PROXY v2: address block shorter than its family needs");
	size_t total = PROXY_V2_FIXED + plen;
	if (len < total)
		return PROXY_NEED_MORE;

	const unsigned char *a = d + PROXY_V2_FIXED;
	if (cmd == V2_CMD_LOCAL || fam == V2_UNSPEC) {
		/* keep the real endpoints; the block and its TLVs are ignored */
		out->local = 1;
	} else if (fam == V2_UNIX_STREAM) {
		/* a local proxy on a unix socket: no network address to log */
		out->local = 1;
		if (check_tlvs(d, PROXY_V2_FIXED + addr_len, total, out) != PROXY_DONE)
			return PROXY_ERROR;
	} else {
		if (check_tlvs(d, PROXY_V2_FIXED + addr_len, total, out) != PROXY_DONE)
			return PROXY_ERROR;
		uint16_t sport, dport;
		if (fam == V2_TCP4) {
			struct in_addr s, t;
			memcpy(&s.s_addr, a, 4);
			memcpy(&t.s_addr, a + 4, 4);
			memcpy(&sport, a + 8, 2);
			memcpy(&dport, a + 10, 2);
			set_inet(&out->src, &out->src_len, &s, sport);
			set_inet(&out->dst, &out->dst_len, &t, dport);
		} else {
			struct in6_addr s, t;
			memcpy(&s, a, 16);
			memcpy(&t, a + 16, 16);
			memcpy(&sport, a + 32, 2);
			memcpy(&dport, a + 34, 2);
			set_inet6(&out->src, &out->src_len, &s, sport);
			set_inet6(&out->dst, &out->dst_len, &t, dport);
		}
	}
	out->header_len = total;
	return PROXY_DONE;
}

enum proxy_status proxy_parse(const void *data, size_t len, struct proxy_header *out)
{
	const unsigned char *d = data;
	memset(out, 0, sizeof *out);
	if (len == 0)
		return PROXY_NEED_MORE;
	if (d[0] == v2_signature[0])
		return parse_v2(d, len, out);
	return parse_v1(d, len, out);
}
