/* libFuzzer target: what tpops reads from a Maildir that others write -
 * file names (base name, S=/W= size fields, UIDL) and the size cache. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildir.h"
#include "xalloc.h"

#include "fuzz_check.h"

static void check_name(const char *name, size_t len)
{
	size_t base = maildir_base_length(name);
	CHECK(base <= len);
	CHECK(base == len || name[base] == ':');
	uint64_t v;
	(void)maildir_size_field(name, base, 'S', &v);
	(void)maildir_size_field(name, base, 'W', &v);
	char uidl[POP3_MAX_UIDL + 1];
	maildir_uidl(name, base, uidl);
	size_t n = strlen(uidl);
	CHECK(n >= 1 && n <= POP3_MAX_UIDL);
	for (size_t i = 0; i < n; i++)
		CHECK(uidl[i] >= 0x21 && uidl[i] <= 0x7e);
	char again[POP3_MAX_UIDL + 1];
	maildir_uidl(name, base, again);
	CHECK(strcmp(uidl, again) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* as a file name: no NUL and no '/' in a directory entry */
	char *name = xmalloc(size + 1);
	size_t len = 0;
	for (size_t i = 0; i < size && len < 255; i++)
		if (data[i] != '\0' && data[i] != '/')
			name[len++] = (char)data[i];
	name[len] = '\0';
	check_name(name, len);
	free(name);

	/* as a size cache: every entry parsed must be found again */
	char *text = xmalloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	struct maildir_size_cache cache;
	if (maildir_size_cache_parse(&cache, text, size)) {
		for (size_t i = 0; i < cache.count; i++) {
			const struct maildir_size_entry *e = &cache.entries[i];
			CHECK(e->base_len > 0 && memchr(e->base, '\n', e->base_len) == NULL);
			struct maildir_size_entry *found =
				maildir_size_cache_find(&cache, e->base, e->base_len);
			CHECK(found != NULL && found->base_len == e->base_len &&
			      memcmp(found->base, e->base, e->base_len) == 0);
		}
	} else {
		CHECK(cache.count == 0);
	}
	maildir_size_cache_free(&cache);
	return 0;
}
