/* Unit tests of maildir_open_or_make (src/maildir_path.c): a missing
 * Maildir is made at login, with tmp/ new/ cur/, only when the directory
 * above it exists; nothing is made for a path that is refused, names a
 * file, or would be outside MaildirRoot. On a scratch directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"
#include "maildir.h"

static char scratch[256], root[300], outside[300];

static int make_scratch(void **state)
{
	snprintf(scratch, sizeof scratch, "/tmp/tpops-unit-maildir-make-XXXXXX");
	if (mkdtemp(scratch) == NULL)
		return -1;
	snprintf(root, sizeof root, "%s/root", scratch);
	snprintf(outside, sizeof outside, "%s/outside", scratch);
	return mkdir(root, 0755) == 0 && mkdir(outside, 0755) == 0 ? 0 : -1;
}

static int remove_scratch(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
	return system(cmd) == 0 ? 0 : -1;
}

static bool is_dir(const char *base, const char *path)
{
	char full[600];
	struct stat st;
	snprintf(full, sizeof full, "%s/%s", base, path);
	return stat(full, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *base, const char *path)
{
	char full[600];
	struct stat st;
	snprintf(full, sizeof full, "%s/%s", base, path);
	return lstat(full, &st) == 0;
}

/* The status of maildir_open_or_make; *made and the reason are kept. */
static int open_or_make(const char *r, const char *maildir, bool *made, char *err, size_t errlen)
{
	int fd = -1;
	err[0] = '\0';
	int status = maildir_open_or_make(r, maildir, &fd, made, err, errlen);
	if (status == DB_OK) {
		assert_true(fd >= 0);
		close(fd);
	}
	return status;
}

static void test_makes_the_maildir_itself(void **state)
{
	char err[512];
	bool made;
	assert_int_equal(open_or_make(root, "bob", &made, err, sizeof err), DB_OK);
	assert_true(made);
	assert_true(is_dir(root, "bob/tmp") && is_dir(root, "bob/new") && is_dir(root, "bob/cur"));
	struct stat st;
	char path[600];
	snprintf(path, sizeof path, "%s/bob", root);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* there now: opened, not made again */
	assert_int_equal(open_or_make(root, "bob", &made, err, sizeof err), DB_OK);
	assert_false(made);
	/* below an existing directory, with a trailing slash, by absolute path */
	assert_int_equal(mkdir(strcat(strcpy(path, root), "/example.com"), 0755), 0);
	assert_int_equal(open_or_make(root, "example.com/carol/", &made, err, sizeof err), DB_OK);
	assert_true(made && is_dir(root, "example.com/carol/new"));
	snprintf(path, sizeof path, "%s/dave", root);
	assert_int_equal(open_or_make(root, path, &made, err, sizeof err), DB_OK);
	assert_true(made && is_dir(root, "dave/cur"));
}

static void test_never_makes_the_directories_above(void **state)
{
	char err[512];
	bool made;
	assert_int_equal(open_or_make(root, "gone.example/erin", &made, err, sizeof err),
			 DB_PERMFAIL);
	assert_false(made);
	assert_non_null(strstr(err, "neither does the directory it would be made in"));
	assert_false(exists(root, "gone.example"));
	assert_int_equal(open_or_make(root, "a/b/c", &made, err, sizeof err), DB_PERMFAIL);
	assert_false(exists(root, "a"));
}

static void test_refused_paths_make_nothing(void **state)
{
	char err[512], link[600];
	bool made;
	/* "..", the root itself, "a/.": the first reason stands (this test runs
	 * after test_makes_the_maildir_itself, which made bob) */
	assert_int_equal(open_or_make(root, "../outside/x", &made, err, sizeof err), DB_PERMFAIL);
	assert_non_null(strstr(err, "\"..\""));
	assert_false(exists(outside, "x"));
	assert_int_equal(open_or_make(root, ".", &made, err, sizeof err), DB_PERMFAIL);
	assert_non_null(strstr(err, "MaildirRoot itself"));
	assert_int_equal(open_or_make(root, "bob/.", &made, err, sizeof err), DB_OK);
	assert_false(made); /* bob/ is there; "." is never made */
	assert_int_equal(open_or_make(root, "nobody/.", &made, err, sizeof err), DB_PERMFAIL);
	assert_false(exists(root, "nobody"));
	/* a symlink out of the root: nothing is made where it leads */
	snprintf(link, sizeof link, "%s/escape", root);
	assert_int_equal(symlink(outside, link), 0);
	assert_int_equal(open_or_make(root, "escape/frank", &made, err, sizeof err), DB_PERMFAIL);
	assert_false(made);
	assert_false(exists(outside, "frank"));
	/* a file, or a symlink, where the Maildir would be: not replaced */
	char file[600];
	snprintf(file, sizeof file, "%s/plainfile", root);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(open_or_make(root, "plainfile", &made, err, sizeof err), DB_PERMFAIL);
	assert_false(made);
	assert_int_equal(open_or_make(root, "escape", &made, err, sizeof err), DB_PERMFAIL);
	assert_false(made);
	/* absolute, outside the root */
	snprintf(file, sizeof file, "%s/gina", outside);
	assert_int_equal(open_or_make(root, file, &made, err, sizeof err), DB_PERMFAIL);
	assert_false(exists(outside, "gina"));
	assert_int_equal(open_or_make(root, "", &made, err, sizeof err), DB_PERMFAIL);
}

static void test_without_a_root(void **state)
{
	char err[512], path[600];
	bool made;
	snprintf(path, sizeof path, "%s/henry", outside);
	assert_int_equal(open_or_make(NULL, path, &made, err, sizeof err), DB_OK);
	assert_true(made && is_dir(outside, "henry/new"));
	snprintf(path, sizeof path, "%s/nope/ivan", outside);
	assert_int_equal(open_or_make(NULL, path, &made, err, sizeof err), DB_PERMFAIL);
	assert_false(exists(outside, "nope"));
	assert_int_equal(open_or_make(NULL, "relative", &made, err, sizeof err), DB_PERMFAIL);
	assert_non_null(strstr(err, "relative"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_makes_the_maildir_itself),
		cmocka_unit_test(test_never_makes_the_directories_above),
		cmocka_unit_test(test_refused_paths_make_nothing),
		cmocka_unit_test(test_without_a_root),
	};
	return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
