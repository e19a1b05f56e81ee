/* Unit tests of maildir.c: names, size fields, UIDLs, the size cache, path
 * resolution below a root and delivery, on a scratch directory. */
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"
#include "maildir.h"
#include "xalloc.h"

static char scratch[256];

static int make_scratch(void **state)
{
	snprintf(scratch, sizeof scratch, "/tmp/tpops-unit-maildir-XXXXXX");
	return mkdtemp(scratch) == NULL ? -1 : 0;
}

static int remove_scratch(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_base_and_fields(void **state)
{
	const char *name = "1600000000.M1P2Q3.host,S=1234,W=1250:2,S";
	size_t base = maildir_base_length(name);
	assert_int_equal(base, strlen("1600000000.M1P2Q3.host,S=1234,W=1250"));
	uint64_t v = 0;
	assert_true(maildir_size_field(name, base, 'S', &v));
	assert_int_equal(v, 1234);
	assert_true(maildir_size_field(name, base, 'W', &v));
	assert_int_equal(v, 1250);
	/* not a field: no digits, junk after them, beyond the base name */
	assert_false(maildir_size_field("1.x,S=,W=5", 10, 'S', &v));
	assert_false(maildir_size_field("1.x,S=12a", 9, 'S', &v));
	assert_false(maildir_size_field("1.x:2,S=12", 3, 'S', &v));
	assert_false(maildir_size_field("1.x,S=99999999999999999999999", 29, 'S', &v));
	/* the first well-formed one counts */
	assert_true(maildir_size_field("1.x,S=1x,S=7", 12, 'S', &v));
	assert_int_equal(v, 7);
}

static void test_uidl(void **state)
{
	char u[POP3_MAX_UIDL + 1];
	maildir_uidl("1600000000.M1P2Q3.host", 22, u);
	assert_string_equal(u, "1600000000.M1P2Q3.host");
	char long_name[100];
	memset(long_name, 'a', sizeof long_name);
	maildir_uidl(long_name, 71, u);
	assert_int_equal(strlen(u), 65);
	assert_int_equal(u[0], 'X');
	char again[POP3_MAX_UIDL + 1];
	maildir_uidl(long_name, 71, again);
	assert_string_equal(u, again);
	maildir_uidl(long_name, 70, u); /* exactly 70: valid as it is */
	assert_int_equal(strlen(u), 70);
	maildir_uidl("with space", 10, u);
	assert_int_equal(u[0], 'X');
	maildir_uidl("", 0, u);
	assert_int_equal(u[0], 'X');
	for (const char *p = u; *p; p++)
		assert_true(*p >= 0x21 && *p <= 0x7e);
}

static void test_unique_names(void **state)
{
	char a[256], b[256];
	maildir_unique_name(a, sizeof a);
	maildir_unique_name(b, sizeof b);
	assert_string_not_equal(a, b);
	for (const char *p = a; *p; p++)
		assert_true(*p >= 0x21 && *p <= 0x7e && *p != '/' && *p != ':' && *p != ',');
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_size_cache(void **state)
{
	char dir[300];
	snprintf(dir, sizeof dir, "%s/cache", scratch);
	int fd = -1;
	char err[256];
	assert_int_equal(maildir_open_dir(NULL, dir, true, &fd, err, sizeof err), DB_OK);
	int sub[3];
	assert_int_equal(maildir_open_subdirs(fd, true, sub, err, sizeof err), DB_OK);
	for (int i = 0; i < 3; i++)
		close(sub[i]);
	struct maildir_size_entry entries[3] = {
		{.base = "a.1", .base_len = 3, .wire_size = 10, .raw_size = 9},
		{.base = "b 2", .base_len = 3, .wire_size = 20, .raw_size = 19},
		{.base = "bad\nname", .base_len = 8, .wire_size = 1, .raw_size = 1},
	};
	assert_int_equal(maildir_size_cache_save(fd, entries, 3, err, sizeof err), DB_OK);
	struct maildir_size_cache c;
	maildir_size_cache_load(fd, &c);
	assert_int_equal(c.count, 2);
	struct maildir_size_entry *e = maildir_size_cache_find(&c, "b 2", 3);
	assert_non_null(e);
	assert_int_equal(e->wire_size, 20);
	assert_int_equal(e->raw_size, 19);
	assert_null(maildir_size_cache_find(&c, "b 3", 3));
	maildir_size_cache_free(&c);

	/* cut short or malformed: ignored as a whole */
	char path[400];
	snprintf(path, sizeof path, "%s/%s", dir, MAILDIR_SIZE_CACHE);
	const char *bad[] = {
		"tpops-sizes 1\n10 9 a.1\n",
		"tpops-sizes 1\n10 9 a.1\nend 2\n",
		"tpops-sizes 2\n10 9 a.1\nend 1\n",
		"tpops-sizes 1\n10 a.1\nend 1\n",
		"tpops-sizes 1\n10 9 a.1\nend 1\ntrailing",
		"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_file(path, bad[i]);
		maildir_size_cache_load(fd, &c);
		assert_int_equal(c.count, 0);
		assert_null(maildir_size_cache_find(&c, "a.1", 3));
		maildir_size_cache_free(&c);
	}
	close(fd);
}

static void test_listing_cache(void **state)
{
	char dir[300], err[256];
	snprintf(dir, sizeof dir, "%s/index", scratch);
	int fd = -1;
	assert_int_equal(maildir_open_dir(NULL, dir, true, &fd, err, sizeof err), DB_OK);
	int sub[3];
	assert_int_equal(maildir_open_subdirs(fd, true, sub, err, sizeof err), DB_OK);
	for (int i = 0; i < 3; i++)
		close(sub[i]);
	struct maildir_dir_stamp stamps[2];
	assert_true(maildir_dir_stamps(fd, stamps));
	struct timespec listed = {.tv_sec = (time_t)stamps[1].mtime_sec + 5};
	if (stamps[0].mtime_sec > stamps[1].mtime_sec)
		listed.tv_sec = (time_t)stamps[0].mtime_sec + 5;
	struct timespec soon = {.tv_sec = (time_t)stamps[0].mtime_sec,
				.tv_nsec = 999999999};
	assert_true(maildir_index_trustworthy(stamps, &listed));
	assert_false(maildir_index_trustworthy(stamps, &soon));

	const struct maildir_index_item items[3] = {
		{.name = "new/2.b", .size = 20, .raw_size = 19},
		{.name = "cur/1.a,S=9,W=10:2,S", .size = 10, .raw_size = 9},
		{.name = "new/3.c", .size = 0, .raw_size = 0},
	};
	assert_int_equal(maildir_index_save(fd, stamps, &listed, items, 3, 1, err, sizeof err),
			 DB_OK);
	struct maildir_index idx;
	assert_true(maildir_index_load(fd, stamps, &idx));
	assert_int_equal(idx.count, 3);
	assert_int_equal(idx.from_name, 1);
	for (size_t i = 0; i < 3; i++) {
		const struct maildir_index_entry *e = &idx.entries[i];
		assert_string_equal(idx.names + e->name_off, items[i].name);
		assert_int_equal(e->size, items[i].size);
		assert_int_equal(e->raw_size, items[i].raw_size);
	}
	assert_int_equal(idx.entries[1].base_len, strlen("1.a,S=9,W=10"));
	/* kept whole for damage tests below */
	char *good = xmalloc(idx.len);
	size_t good_len = idx.len;
	memcpy(good, idx.buf, idx.len);
	maildir_index_free(&idx);

	/* other directories (any field of a stamp) */
	struct maildir_dir_stamp other[2];
	for (int f = 0; f < 7; f++) {
		memcpy(other, stamps, sizeof other);
		int64_t *fields = (int64_t *)(void *)&other[f % 2];
		fields[f] ^= 1;
		assert_false(maildir_index_load(fd, other, &idx));
		assert_null(idx.buf);
	}
	/* a new file in new/ changes its mtime */
	char path[500];
	snprintf(path, sizeof path, "%s/new/4.d", dir);
	write_file(path, "x");
	assert_true(maildir_dir_stamps(fd, other));
	assert_false(maildir_index_load(fd, other, &idx));

	/* every single damaged octet, and every cut, is refused */
	for (size_t i = 0; i < good_len; i++) {
		char *copy = xmalloc(good_len);
		memcpy(copy, good, good_len);
		copy[i] ^= 0x20;
		bool loaded = maildir_index_parse(&idx, copy, good_len, stamps);
		/* only a changed stamp or time would pass the other checks,
		 * and the stamps are compared */
		assert_false(loaded);
		char *cut = xmalloc(i ? i : 1);
		memcpy(cut, good, i);
		assert_false(maildir_index_parse(&idx, cut, i, stamps));
	}
	/* a written listing before 1 s had passed is refused too */
	char *copy = xmalloc(good_len);
	memcpy(copy, good, good_len);
	assert_true(maildir_index_parse(&idx, copy, good_len, stamps));
	maildir_index_free(&idx);
	assert_int_equal(maildir_index_save(fd, stamps, &soon, items, 3, 1, err, sizeof err),
			 DB_OK);
	assert_false(maildir_index_load(fd, stamps, &idx));
	/* a name outside new/ and cur/ is refused when loaded */
	const struct maildir_index_item bad = {.name = "tmp/x"};
	assert_int_equal(maildir_index_save(fd, stamps, &listed, &bad, 1, 0, err, sizeof err),
			 DB_OK);
	assert_false(maildir_index_load(fd, stamps, &idx));
	maildir_index_remove(fd);
	assert_false(maildir_index_load(fd, stamps, &idx));
	free(good);
	close(fd);
}

/* A MaildirRoot scratch/NAME with "link", a symlink that leads out of it
 * (to scratch/outside). */
static void make_root_with_escape(char *root, size_t size, const char *name)
{
	char path[400];
	snprintf(root, size, "%s/%s", scratch, name);
	mkdir(root, 0700);
	snprintf(path, sizeof path, "%s/outside", scratch);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/link", root);
	assert_int_equal(symlink("../outside", path), 0);
}

static void test_resolution_below_root(void **state)
{
	char root[300], path[400], err[256];
	make_root_with_escape(root, sizeof root, "root");
	snprintf(path, sizeof path, "%s/inside", root);
	assert_int_equal(symlink("user", path), 0);
	int fd = -1;
	assert_int_equal(maildir_open_dir(root, "user", false, &fd, err, sizeof err), DB_PERMFAIL);
	assert_non_null(strstr(err, "does not exist"));
	assert_int_equal(maildir_open_dir(root, "a/b/user", true, &fd, err, sizeof err), DB_OK);
	close(fd);
	assert_int_equal(maildir_open_dir(root, "user", true, &fd, err, sizeof err), DB_OK);
	close(fd);
	assert_int_equal(maildir_open_dir(root, "inside", false, &fd, err, sizeof err), DB_OK);
	close(fd);
	snprintf(path, sizeof path, "%s/user", root);
	assert_int_equal(maildir_open_dir(root, path, false, &fd, err, sizeof err), DB_OK);
	close(fd);
	const char *refused[] = {"link", "link/x", "../outside", "user/../user", ".", "/etc", ""};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		err[0] = '\0';
		assert_int_equal(maildir_open_dir(root, refused[i], true, &fd, err, sizeof err),
				 DB_PERMFAIL);
		assert_true(err[0] != '\0');
	}
	assert_int_equal(maildir_open_dir(NULL, "relative", false, &fd, err, sizeof err),
			 DB_PERMFAIL);
}

/* The I/O threads' variant: the same refusals (as DB_AGAIN, for a worker
 * to report), and what was just used is in the kernel's caches. */
static void test_resolution_from_caches_only(void **state)
{
	char root[300], path[400], err[256];
	make_root_with_escape(root, sizeof root, "cached");
	int fd = -1;
	assert_int_equal(maildir_open_dir(root, "user", true, &fd, err, sizeof err), DB_OK);
	close(fd);
	snprintf(path, sizeof path, "%s/user/new", root);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/user/new/1.x", root);
	write_file(path, "hello\n");

	fd = -1;
	assert_int_equal(maildir_open_dir_cached(root, "user", &fd), DB_OK);
	assert_true(fd >= 0);
	int file = maildir_openat_cached(fd, "new/1.x", O_RDONLY);
	assert_true(file >= 0);
	char buf[16];
	assert_int_equal(read(file, buf, sizeof buf), 6);
	close(file);
	errno = 0;
	assert_int_equal(maildir_openat_cached(fd, "new/missing", O_RDONLY), -1);
	/* a name never looked up is not in the cache either */
	assert_true(errno == ENOENT || errno == EAGAIN);
	assert_int_equal(maildir_openat_cached(fd, "../link", O_RDONLY), -1);
	close(fd);
	snprintf(path, sizeof path, "%s/user", root);
	assert_int_equal(maildir_open_dir_cached(root, path, &fd), DB_OK);
	close(fd);
	assert_int_equal(maildir_open_dir_cached(NULL, path, &fd), DB_OK);
	close(fd);

	const char *refused[] = {"link", "link/x", "../outside", "user/../user", ".", "/etc", "",
				 "missing"};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		fd = -1;
		assert_int_equal(maildir_open_dir_cached(root, refused[i], &fd), DB_AGAIN);
		assert_int_equal(fd, -1);
	}
	assert_int_equal(maildir_open_dir_cached(NULL, "relative", &fd), DB_AGAIN);
	assert_int_equal(maildir_open_dir_cached(root, NULL, &fd), DB_AGAIN);
}

static void test_deliver_and_usage(void **state)
{
	char dir[300], err[256], name[512];
	snprintf(dir, sizeof dir, "%s/deliver", scratch);
	int fd = -1;
	assert_int_equal(maildir_open_dir(NULL, dir, true, &fd, err, sizeof err), DB_OK);
	assert_int_equal(maildir_deliver(fd, "a\nb\n", 4, 6, 0, name, sizeof name, err, sizeof err),
			 DB_OK);
	assert_non_null(strstr(name, ",S=4,W=6"));
	uint64_t used = 0;
	assert_int_equal(maildir_usage(fd, &used, err, sizeof err), DB_OK);
	assert_int_equal(used, 4);
	/* a file without S= counts with its size */
	char path[700];
	snprintf(path, sizeof path, "%s/cur/1.x:2,S", dir);
	write_file(path, "12345");
	assert_int_equal(maildir_usage(fd, &used, err, sizeof err), DB_OK);
	assert_int_equal(used, 9);
	assert_int_equal(maildir_deliver(fd, "c\n", 2, 3, 10, NULL, 0, err, sizeof err), DB_QUOTA);
	assert_int_equal(maildir_deliver(fd, "c", 1, 3, 10, NULL, 0, err, sizeof err), DB_OK);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_and_fields),
		cmocka_unit_test(test_uidl),
		cmocka_unit_test(test_unique_names),
		cmocka_unit_test(test_size_cache),
		cmocka_unit_test(test_listing_cache),
		cmocka_unit_test(test_resolution_below_root),
		cmocka_unit_test(test_resolution_from_caches_only),
		cmocka_unit_test(test_deliver_and_usage),
	};
	return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
