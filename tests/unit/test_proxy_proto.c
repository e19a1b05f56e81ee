/* Unit tests of the PROXY protocol header parser (src/proxy_proto.c):
 * the examples of haproxy's doc/proxy-protocol.txt, every prefix of a
 * valid header, and many malformed ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "proxy_proto.h"

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static enum proxy_status parse_str(const char *s, struct proxy_header *h)
{
	return proxy_parse(s, strlen(s), h);
}

/* "ADDR PORT" of a parsed address, for comparisons. */
static const char *addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	unsigned port;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
		port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
		port = ntohs(in6->sin6_port);
	} else {
		snprintf(buf, len, "family %d", ss->ss_family);
		return buf;
	}
	snprintf(buf, len, "%s %u", a, port);
	return buf;
}

static void assert_addrs(const struct proxy_header *h, const char *src, const char *dst)
{
	char b[128];
	assert_int_equal(h->local, 0);
	assert_string_equal(addr_text(&h->src, b, sizeof b), src);
	assert_string_equal(addr_text(&h->dst, b, sizeof b), dst);
	assert_int_equal(h->src_len, h->src.ss_family == AF_INET ? sizeof(struct sockaddr_in)
								  : sizeof(struct sockaddr_in6));
	assert_int_equal(h->dst_len, h->src_len);
}

/* Every proper prefix of a valid header needs more; the whole is DONE. */
static void assert_prefixes_need_more(const void *data, size_t len)
{
	struct proxy_header h;
	for (size_t i = 0; i < len; i++) {
		enum proxy_status st = proxy_parse(data, i, &h);
		if (st != PROXY_NEED_MORE)
			print_error("prefix of %zu octets: status %d (%s)\n", i, st,
				    h.reason ? h.reason : "");
		assert_int_equal(st, PROXY_NEED_MORE);
	}
	assert_int_equal(proxy_parse(data, len, &h), PROXY_DONE);
	assert_int_equal(h.header_len, len);
}

static void v1_fails(const char *s)
{
	struct proxy_header h;
	enum proxy_status st = parse_str(s, &h);
	if (st != PROXY_ERROR)
		print_error("accepted: \"%s\" (status %d)\n", s, st);
	assert_int_equal(st, PROXY_ERROR);
	assert_non_null(h.reason);
	assert_true(strlen(h.reason) > 0);
}

/* ---- version 1 ------------------------------------------------------ */

static void test_v1_spec_example(void **state)
{
	struct proxy_header h;
	const char *s = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
			"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
	assert_int_equal(parse_str(s, &h), PROXY_DONE);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.header_len, strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));
	assert_addrs(&h, "192.168.0.1 56324", "192.168.0.11 443");
}

static void test_v1_pop3(void **state)
{
	struct proxy_header h;
	const char *s = "PROXY TCP4 203.0.113.7 10.0.0.1 40000 110\r\nCAPA\r\n";
	assert_int_equal(parse_str(s, &h), PROXY_DONE);
	assert_memory_equal(s + h.header_len, "CAPA\r\n", 6);
	assert_addrs(&h, "203.0.113.7 40000", "10.0.0.1 110");
}

static void test_v1_tcp6(void **state)
{
	struct proxy_header h;
	assert_int_equal(parse_str("PROXY TCP6 2001:db8::1 2001:db8::2 1234 110\r\n", &h),
			 PROXY_DONE);
	assert_addrs(&h, "2001:db8::1 1234", "2001:db8::2 110");
	assert_int_equal(parse_str("PROXY TCP6 :: ::1 0 65535\r\n", &h), PROXY_DONE);
	assert_addrs(&h, ":: 0", "::1 65535");
	assert_int_equal(parse_str("PROXY TCP6 ::FFFF:192.0.2.1 2001:DB8:0:0:0:0:0:1 1 2\r\n", &h),
			 PROXY_DONE);
	assert_addrs(&h, "::ffff:192.0.2.1 1", "2001:db8::1 2");
}

/* The longest lines of spec 2.1: 56, 104 and 107 octets. */
static void test_v1_longest(void **state)
{
	struct proxy_header h;
	const char *v4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
	assert_int_equal(strlen(v4), 56);
	assert_int_equal(parse_str(v4, &h), PROXY_DONE);
	assert_addrs(&h, "255.255.255.255 65535", "255.255.255.255 65535");

	const char *v6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	assert_int_equal(strlen(v6), 104);
	assert_int_equal(parse_str(v6, &h), PROXY_DONE);
	assert_int_equal(h.header_len, 104);

	const char *unk = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	assert_int_equal(strlen(unk), PROXY_V1_MAX);
	assert_int_equal(parse_str(unk, &h), PROXY_DONE);
	assert_int_equal(h.header_len, PROXY_V1_MAX);
	assert_int_equal(h.local, 1);

	/* one more octet: the CRLF is not within 107 */
	v1_fails("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffff 65535 65535\r\n");
	v1_fails("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535 \r\n");
}

static void test_v1_unknown(void **state)
{
	struct proxy_header h;
	assert_int_equal(parse_str("PROXY UNKNOWN\r\nUSER a\r\n", &h), PROXY_DONE);
	assert_int_equal(h.header_len, 15);
	assert_int_equal(h.local, 1);
	assert_int_equal(h.src_len, 0);
	/* anything up to the CRLF is ignored */
	assert_int_equal(parse_str("PROXY UNKNOWN whatever 1 2 3\r\n", &h), PROXY_DONE);
	assert_int_equal(h.local, 1);
	assert_int_equal(parse_str("PROXY UNKNOWN \r\n", &h), PROXY_DONE);
	v1_fails("PROXY UNKNOWNX\r\n");
	v1_fails("PROXY UNKNOWN\tx\r\n");
	v1_fails("PROXY UNKNOWN\r\r\n");
}

static void test_v1_prefixes(void **state)
{
	const char *lines[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 1234 110\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
	};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
		assert_prefixes_need_more(lines[i], strlen(lines[i]));
}

/* Junk is refused as soon as an octet shows it, not after 107 octets. */
static void test_v1_early_error(void **state)
{
	struct proxy_header h;
	assert_int_equal(proxy_parse("U", 1, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("USER alice\r\n", 12, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXX", 5, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("proxy", 5, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY\r", 6, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY X", 7, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY TCP5", 10, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY TCP4\t", 11, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY UNKNOWX", 13, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2.3.4\n", 19, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2.3.4\rX", 20, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2\0", 15, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2\x80", 15, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2\x7f", 15, &h), PROXY_ERROR);
	/* still a possible header */
	assert_int_equal(proxy_parse("", 0, &h), PROXY_NEED_MORE);
	assert_int_equal(proxy_parse("P", 1, &h), PROXY_NEED_MORE);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2.3.4", 18, &h), PROXY_NEED_MORE);
	assert_int_equal(proxy_parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", 31, &h), PROXY_NEED_MORE);
}

static void test_v1_no_crlf(void **state)
{
	char line[300];
	memset(line, 'A', sizeof line);
	memcpy(line, "PROXY UNKNOWN ", 14);
	struct proxy_header h;
	assert_int_equal(proxy_parse(line, PROXY_V1_MAX - 1, &h), PROXY_NEED_MORE);
	assert_int_equal(proxy_parse(line, PROXY_V1_MAX, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse(line, sizeof line, &h), PROXY_ERROR);
	/* CR as octet 107: the LF would be the 108th */
	line[PROXY_V1_MAX - 1] = '\r';
	line[PROXY_V1_MAX] = '\n';
	assert_int_equal(proxy_parse(line, PROXY_V1_MAX, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse(line, PROXY_V1_MAX + 1, &h), PROXY_ERROR);
	/* CR as octet 106, LF as 107: exactly the limit */
	line[PROXY_V1_MAX - 2] = '\r';
	line[PROXY_V1_MAX - 1] = '\n';
	assert_int_equal(proxy_parse(line, PROXY_V1_MAX, &h), PROXY_DONE);
	assert_int_equal(h.header_len, PROXY_V1_MAX);
}

static void test_v1_malformed(void **state)
{
	static const char *const bad[] = {
		/* line ends */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
		"PROXY \r\n",
		"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"\r\n\r\n\r\n", /* a v2 signature up to its fifth octet */
		/* protocol */
		"PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4\r\n",
		"PROXY TCP4 \r\n",
		"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP46 1.2.3.4 5.6.7.8 1 2\r\n",
		/* fields */
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
		/* IPv4 */
		"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.00 5.6.7.8 1 2\r\n",
		"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.999 1 2\r\n",
		"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n",
		"PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.a 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.-4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 16909060 5.6.7.8 1 2\r\n",
		"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
		"PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
		/* IPv6 */
		"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
		"PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
		"PROXY TCP6 ::1%eth0 ::1 1 2\r\n",
		"PROXY TCP6 [::1] ::1 1 2\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
		"PROXY TCP6 1::2::3 ::1 1 2\r\n",
		"PROXY TCP6 ::: ::1 1 2\r\n",
		"PROXY TCP6 12345::1 ::1 1 2\r\n",
		"PROXY TCP6 g::1 ::1 1 2\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
		/* ports */
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 pop3 2\r\n",
		"PROXY TCP6 ::1 ::2 4294967297 2\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		v1_fails(bad[i]);
}

static void test_v1_ports_and_zeroes(void **state)
{
	struct proxy_header h;
	assert_int_equal(parse_str("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", &h), PROXY_DONE);
	assert_addrs(&h, "0.0.0.0 0", "0.0.0.0 0");
	assert_int_equal(parse_str("PROXY TCP4 10.20.30.40 100.200.0.9 65535 1\r\n", &h),
			 PROXY_DONE);
	assert_addrs(&h, "10.20.30.40 65535", "100.200.0.9 1");
}

/* ---- version 2 ------------------------------------------------------ */

/* An independent, table-driven CRC32c (RFC 4960 appendix B), to build
 * headers that the parser must accept. */
static uint32_t test_crc32c(const unsigned char *p, size_t n)
{
	static uint32_t table[256];
	if (table[1] == 0) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	}
	uint32_t crc = 0xFFFFFFFFu;
	while (n--)
		crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return crc ^ 0xFFFFFFFFu;
}

static void test_crc32c_vector(void **state)
{
	assert_int_equal(test_crc32c((const unsigned char *)"123456789", 9), 0xE3069283u);
}

/* Builds a v2 header in buf: signature, ver_cmd, fam, payload. */
static size_t v2(unsigned char *buf, unsigned ver_cmd, unsigned fam, const void *payload,
		 size_t plen)
{
	memcpy(buf, sig, 12);
	buf[12] = (unsigned char)ver_cmd;
	buf[13] = (unsigned char)fam;
	buf[14] = (unsigned char)(plen >> 8);
	buf[15] = (unsigned char)plen;
	if (plen)
		memcpy(buf + 16, payload, plen);
	return 16 + plen;
}

static const unsigned char tcp4_block[12] = {
	192, 0, 2, 10, /* source 192.0.2.10 */
	10, 0, 0, 1,   /* destination 10.0.0.1 */
	0xD4, 0x31,    /* source port 54321 */
	0x00, 0x6E,    /* destination port 110 */
};

static void test_v2_tcp4(void **state)
{
	unsigned char buf[128];
	struct proxy_header h;
	size_t n = v2(buf, 0x21, 0x11, tcp4_block, sizeof tcp4_block);
	assert_int_equal(n, 28);
	memcpy(buf + n, "CAPA\r\n", 6);
	assert_int_equal(proxy_parse(buf, n + 6, &h), PROXY_DONE);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.header_len, 28);
	assert_addrs(&h, "192.0.2.10 54321", "10.0.0.1 110");
	assert_prefixes_need_more(buf, n);
}

static void test_v2_tcp6(void **state)
{
	unsigned char block[36] = {0};
	block[0] = 0x20, block[1] = 0x01, block[2] = 0x0d, block[3] = 0xb8, block[15] = 1;
	block[16] = 0x20, block[17] = 0x01, block[18] = 0x0d, block[19] = 0xb8, block[31] = 2;
	block[32] = 0x04, block[33] = 0xD2; /* 1234 */
	block[34] = 0x03, block[35] = 0xE3; /* 995 */
	unsigned char buf[128];
	struct proxy_header h;
	size_t n = v2(buf, 0x21, 0x21, block, sizeof block);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.header_len, 52);
	assert_addrs(&h, "2001:db8::1 1234", "2001:db8::2 995");
	assert_prefixes_need_more(buf, n);
}

/* LOCAL (health checks): the block, whatever it holds, is skipped. */
static void test_v2_local(void **state)
{
	unsigned char buf[600];
	struct proxy_header h;
	size_t n = v2(buf, 0x20, 0x00, NULL, 0);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.header_len, 16);
	assert_int_equal(h.local, 1);
	assert_int_equal(h.src_len, 0);

	n = v2(buf, 0x20, 0x11, tcp4_block, sizeof tcp4_block);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.header_len, 28);
	assert_int_equal(h.local, 1);

	/* a LOCAL block need not match its family, nor hold valid TLVs */
	unsigned char junk[5] = {1, 2, 3, 4, 5};
	n = v2(buf, 0x20, 0x21, junk, sizeof junk);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.header_len, 21);
	assert_int_equal(h.local, 1);
	n = v2(buf, 0x20, 0x12, NULL, 0);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_prefixes_need_more(buf, n);
}

static void test_v2_unspec_and_unix(void **state)
{
	unsigned char buf[600], block[216 + 7];
	struct proxy_header h;
	size_t n = v2(buf, 0x21, 0x00, NULL, 0);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.local, 1);
	/* UNSPEC: whatever follows is ignored */
	n = v2(buf, 0x21, 0x00, "abc", 3);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.header_len, 19);

	memset(block, 0, sizeof block);
	strcpy((char *)block, "/run/haproxy.sock");
	n = v2(buf, 0x21, 0x31, block, 216);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.local, 1);
	assert_int_equal(h.header_len, 16 + 216);
	/* with a NOOP TLV */
	block[216] = 0x04, block[217] = 0, block[218] = 4;
	n = v2(buf, 0x21, 0x31, block, 216 + 7);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	/* too short for two unix paths */
	n = v2(buf, 0x21, 0x31, block, 215);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
	/* a broken TLV after the unix paths */
	n = v2(buf, 0x21, 0x31, block, 216 + 2);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
}

/* TLVs after the addresses are skipped; their framing must be right. */
static void test_v2_tlvs(void **state)
{
	unsigned char p[256], buf[512];
	struct proxy_header h;
	size_t k = sizeof tcp4_block;
	memcpy(p, tcp4_block, k);
	/* PP2_TYPE_UNIQUE_ID, 8 octets */
	p[k++] = 0x05, p[k++] = 0, p[k++] = 8;
	memcpy(p + k, "abcdefgh", 8), k += 8;
	/* PP2_TYPE_SSL with a version sub-TLV */
	p[k++] = 0x20, p[k++] = 0, p[k++] = 5 + 3 + 7;
	p[k++] = 0x01, p[k++] = 0, p[k++] = 0, p[k++] = 0, p[k++] = 0;
	p[k++] = 0x21, p[k++] = 0, p[k++] = 7;
	memcpy(p + k, "TLSv1.3", 7), k += 7;
	/* an empty NOOP */
	p[k++] = 0x04, p[k++] = 0, p[k++] = 0;
	size_t n = v2(buf, 0x21, 0x11, p, k);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.header_len, n);
	assert_addrs(&h, "192.0.2.10 54321", "10.0.0.1 110");
	assert_prefixes_need_more(buf, n);

	/* the header ends inside a TLV (cutting 3 drops the NOOP whole) */
	static const size_t cuts[] = {1, 2, 4, 5, 9};
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		n = v2(buf, 0x21, 0x11, p, k - cuts[i]);
		assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
	}
	n = v2(buf, 0x21, 0x11, p, k - 3);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	/* a TLV that claims more than there is */
	n = v2(buf, 0x21, 0x11, p, sizeof tcp4_block + 3 + 7);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
	assert_non_null(h.reason);
	/* one or two stray octets after the addresses */
	n = v2(buf, 0x21, 0x11, p, sizeof tcp4_block + 1);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
	n = v2(buf, 0x21, 0x11, p, sizeof tcp4_block + 2);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
}

static void test_v2_crc32c(void **state)
{
	unsigned char p[64], buf[128];
	struct proxy_header h;
	size_t k = sizeof tcp4_block;
	memcpy(p, tcp4_block, k);
	p[k++] = 0x03, p[k++] = 0, p[k++] = 4;
	size_t at = 16 + k;
	memset(p + k, 0, 4), k += 4;
	size_t n = v2(buf, 0x21, 0x11, p, k);
	uint32_t crc = test_crc32c(buf, n);
	buf[at] = (unsigned char)(crc >> 24), buf[at + 1] = (unsigned char)(crc >> 16);
	buf[at + 2] = (unsigned char)(crc >> 8), buf[at + 3] = (unsigned char)crc;
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_addrs(&h, "192.0.2.10 54321", "10.0.0.1 110");

	/* any flipped bit of the header fails the checksum */
	for (size_t i = 16; i < n; i++) {
		if (i >= 16 + sizeof tcp4_block && i < at)
			continue; /* the TLV's own type and length */
		buf[i] ^= 0x01;
		assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
		buf[i] ^= 0x01;
	}
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);

	/* a CRC32C TLV that is not 4 octets */
	k = sizeof tcp4_block;
	p[k++] = 0x03, p[k++] = 0, p[k++] = 3;
	memset(p + k, 0, 3), k += 3;
	n = v2(buf, 0x21, 0x11, p, k);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
}

static void test_v2_bad_fixed_part(void **state)
{
	unsigned char buf[128];
	struct proxy_header h;
	size_t n;
	/* versions other than 2 */
	static const unsigned bad_ver_cmd[] = {0x00, 0x01, 0x11, 0x31, 0xF1, 0x22, 0x2F, 0x12};
	for (size_t i = 0; i < sizeof bad_ver_cmd / sizeof bad_ver_cmd[0]; i++) {
		n = v2(buf, bad_ver_cmd[i], 0x11, tcp4_block, sizeof tcp4_block);
		assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
		/* decided from the 13th octet alone */
		assert_int_equal(proxy_parse(buf, 13, &h), PROXY_ERROR);
	}
	/* families and transports outside the spec, and datagrams */
	static const unsigned bad_fam[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30,
					   0x33, 0x40, 0x41, 0xF1, 0xFF, 0x12, 0x22, 0x32};
	for (size_t i = 0; i < sizeof bad_fam / sizeof bad_fam[0]; i++) {
		unsigned char block[216] = {0};
		n = v2(buf, 0x21, bad_fam[i], block, 0);
		assert_int_equal(proxy_parse(buf, 14, &h), PROXY_ERROR);
	}
	/* each octet of the signature matters */
	for (size_t i = 1; i < 12; i++) {
		n = v2(buf, 0x21, 0x11, tcp4_block, sizeof tcp4_block);
		buf[i] ^= 0x20;
		assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
		assert_int_equal(proxy_parse(buf, i + 1, &h), PROXY_ERROR);
	}
	/* address blocks too short for their family */
	n = v2(buf, 0x21, 0x11, tcp4_block, 11);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse(buf, 16, &h), PROXY_ERROR);
	n = v2(buf, 0x21, 0x21, tcp4_block, 12);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
	n = v2(buf, 0x21, 0x11, NULL, 0);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_ERROR);
}

static void test_v2_length_bounds(void **state)
{
	size_t max = PROXY_HEADER_MAX;
	unsigned char *buf = calloc(1, max + 16);
	unsigned char *p = calloc(1, PROXY_V2_MAX_PAYLOAD + 16);
	assert_non_null(buf);
	assert_non_null(p);
	struct proxy_header h;
	/* the largest accepted: addresses, then one NOOP TLV filling it up */
	memcpy(p, tcp4_block, 12);
	size_t tlv = PROXY_V2_MAX_PAYLOAD - 12 - 3;
	p[12] = 0x04, p[13] = (unsigned char)(tlv >> 8), p[14] = (unsigned char)tlv;
	size_t n = v2(buf, 0x21, 0x11, p, PROXY_V2_MAX_PAYLOAD);
	assert_int_equal(n, max);
	assert_int_equal(proxy_parse(buf, n - 1, &h), PROXY_NEED_MORE);
	assert_int_equal(proxy_parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.header_len, max);
	/* one more is refused from the 16 fixed octets alone */
	n = v2(buf, 0x21, 0x11, p, PROXY_V2_MAX_PAYLOAD + 1);
	assert_int_equal(proxy_parse(buf, 16, &h), PROXY_ERROR);
	buf[14] = 0xFF, buf[15] = 0xFF;
	assert_int_equal(proxy_parse(buf, 16, &h), PROXY_ERROR);
	free(buf);
	free(p);
}

/* A v2 signature is not a v1 line and the reverse. */
static void test_mixed(void **state)
{
	struct proxy_header h;
	assert_int_equal(proxy_parse("\r\n\r\n\0\r\nQUIT\n", 12, &h), PROXY_NEED_MORE);
	assert_int_equal(proxy_parse("\r\nPROXY", 7, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("\r\n\r\n\0\r\nQUIT\r", 12, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("\x0d\x0a\x0d\x0a\x00\x0d\x0aQUIT\x0a\x21\x11\x00", 15, &h),
			 PROXY_NEED_MORE);
	assert_int_equal(proxy_parse("\0", 1, &h), PROXY_ERROR);
	assert_int_equal(proxy_parse("\r", 1, &h), PROXY_NEED_MORE);
	/* an empty line is the start of the v2 signature */
	assert_int_equal(proxy_parse("\r\n", 2, &h), PROXY_NEED_MORE);
	assert_int_equal(proxy_parse("\n", 1, &h), PROXY_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_spec_example),
		cmocka_unit_test(test_v1_pop3),
		cmocka_unit_test(test_v1_tcp6),
		cmocka_unit_test(test_v1_longest),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v1_prefixes),
		cmocka_unit_test(test_v1_early_error),
		cmocka_unit_test(test_v1_no_crlf),
		cmocka_unit_test(test_v1_malformed),
		cmocka_unit_test(test_v1_ports_and_zeroes),
		cmocka_unit_test(test_crc32c_vector),
		cmocka_unit_test(test_v2_tcp4),
		cmocka_unit_test(test_v2_tcp6),
		cmocka_unit_test(test_v2_local),
		cmocka_unit_test(test_v2_unspec_and_unix),
		cmocka_unit_test(test_v2_tlvs),
		cmocka_unit_test(test_v2_crc32c),
		cmocka_unit_test(test_v2_bad_fixed_part),
		cmocka_unit_test(test_v2_length_bounds),
		cmocka_unit_test(test_mixed),
	};
	return cmocka_run_group_tests_name("proxy_proto", tests, NULL, NULL);
}
