/* libFuzzer target: what a POP3 server sends to tpops-import -> the POP3
 * client's parser (pop3_client.h), checked by ASan/UBSan and by the
 * parser's promises: UIDLs are valid unique-ids, numbers are in range, a
 * multi-line answer's data never exceeds its bound and ends only at ".". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "imported_uidls.h"
#include "pop3_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t left = size;
	struct pop3c_multiline ml = {.max = 4096};
	size_t lines = 0;
	while (left > 0) {
		size_t n = pop3c_line_length(p, left);
		if (n == 0)
			break;
		CHECK(n <= left && p[n - 1] == '\n');
		size_t content = pop3c_line_content(p, n);
		CHECK(content < n);
		const char *text;
		enum pop3c_status st = pop3c_status(p, content, &text);
		if (st != POP3C_BAD)
			CHECK(text >= p && text <= p + content);
		unsigned number;
		char uidl[POP3_MAX_UIDL + 1];
		if (pop3c_uidl_line(p, content, &number, uidl)) {
			CHECK(number >= 1 && number <= POP3_MAX_NUMBER);
			CHECK(imported_uidl_valid(uidl, strlen(uidl)));
		}
		uint64_t msize;
		if (pop3c_list_line(p, content, &number, &msize))
			CHECK(number >= 1 && number <= POP3_MAX_NUMBER);
		if (lines % 7 == 3 && !ml.done && n > 2) {
			/* as a long line arrives: a part first */
			pop3c_multiline_part(&ml, p, 1);
			CHECK(ml.in_line);
		}
		if (lines++ > 0 && !ml.done) {
			bool end = pop3c_multiline_line(&ml, p, n);
			CHECK(end == ml.done);
			if (end)
				CHECK(content == 1 && p[0] == '.' && !ml.in_line);
		}
		CHECK(ml.out.len <= ml.max);
		p += n;
		left -= n;
	}
	CHECK(pop3c_line_length(p, left) == 0);
	buf_free(&ml.out);

	/* the same octets as a Maildir's tpops-uidls file */
	char *copy = malloc(size + 1);
	CHECK(copy != NULL);
	memcpy(copy, data, size);
	copy[size] = '\0';
	struct imported_uidls u;
	imported_uidls_parse(&u, copy, size);
	CHECK(u.parsed_len <= size);
	for (size_t i = 0; i < u.count; i++) {
		const struct imported_uidl *e = &u.entries[i];
		CHECK(imported_uidl_valid(e->uidl, e->uidl_len));
		CHECK(imported_base_valid(e->base, e->base_len));
		CHECK(imported_uidls_find(&u, e->base, e->base_len) == e);
		CHECK(e->order == i);
	}
	imported_uidls_free(&u);
	return 0;
}
