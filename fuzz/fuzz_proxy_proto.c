/* libFuzzer target: connection start bytes -> proxy_parse, checked by
 * ASan/UBSan and by the parser's own promises. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h, again;
	enum proxy_status st = proxy_parse(data, size, &h);
	switch (st) {
	case PROXY_DONE:
		if (h.header_len == 0 || h.header_len > size || h.header_len > PROXY_HEADER_MAX)
			__builtin_trap();
		if (h.version == 1 && h.header_len > PROXY_V1_MAX)
			__builtin_trap();
		if (!h.local) {
			if ((h.src.ss_family != AF_INET && h.src.ss_family != AF_INET6) ||
			    h.src.ss_family != h.dst.ss_family || h.src_len == 0 ||
			    h.src_len != h.dst_len)
				__builtin_trap();
		} else if (h.src_len != 0 || h.dst_len != 0) {
			__builtin_trap();
		}
		/* the header alone gives the same answer; one octet less is
		 * not yet a header */
		if (proxy_parse(data, h.header_len, &again) != PROXY_DONE ||
		    again.header_len != h.header_len || again.local != h.local ||
		    memcmp(&again.src, &h.src, sizeof h.src) != 0 ||
		    memcmp(&again.dst, &h.dst, sizeof h.dst) != 0)
			__builtin_trap();
		if (proxy_parse(data, h.header_len - 1, &again) != PROXY_NEED_MORE)
			__builtin_trap();
		break;
	case PROXY_NEED_MORE:
		/* never asks for more than a header can be */
		if (size >= PROXY_HEADER_MAX)
			__builtin_trap();
		/* a prefix of a possible header is a possible header */
		if (size > 0 && proxy_parse(data, size / 2, &again) != PROXY_NEED_MORE)
			__builtin_trap();
		break;
	case PROXY_ERROR:
		if (h.reason == NULL || h.reason[0] == '\0')
			__builtin_trap();
		break;
	default:
		__builtin_trap();
	}
	return 0;
}
