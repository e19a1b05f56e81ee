/* Unit tests of kernel TLS detection (src/ktls.c): the list parser, and
 * the kernel's answer on this machine agreeing with its own list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ktls.h"

static void test_ulp_list(void **state)
{
	assert_true(ktls_ulp_listed("tls"));
	assert_true(ktls_ulp_listed("mptcp tls\n"));
	assert_true(ktls_ulp_listed("tls espintcp"));
	assert_false(ktls_ulp_listed(""));
	assert_false(ktls_ulp_listed("mptcp\n"));
	assert_false(ktls_ulp_listed("tlsx mptls tl"));
	assert_false(ktls_ulp_listed("\n \t"));
}

/* Where /proc lists "tls" the probe must say yes; where it does not (and
 * the module cannot be loaded: not root, or no module) it says no with a
 * reason. Either way the answer is the same as the kernel's own list
 * after the probe (which loads the module when it can). */
static void test_kernel_answer(void **state)
{
	char why[256] = "";
	bool offered = ktls_kernel_offers(why, sizeof why);
	char list[256] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
	if (f != NULL) {
		size_t n = fread(list, 1, sizeof list - 1, f);
		list[n] = '\0';
		fclose(f);
	}
	if (offered) {
		assert_true(ktls_ulp_listed(list));
		assert_string_equal(why, "");
	} else {
		assert_false(ktls_ulp_listed(list));
		assert_true(strlen(why) > 0);
		print_message("kernel TLS absent here: %s\n", why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ulp_list),
		cmocka_unit_test(test_kernel_answer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
