/* CHECK for the fuzz targets: an invariant that must hold in every build
 * (unlike assert, NDEBUG does not remove it); a failure aborts, which
 * libFuzzer reports with the input. */
#ifndef TPOPS_FUZZ_CHECK_H
#define TPOPS_FUZZ_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                           \
		}                                                                          \
	} while (0)

#endif
