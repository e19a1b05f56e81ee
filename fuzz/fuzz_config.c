/* libFuzzer target: tpops.conf text -> config_parse, checked by ASan/UBSan. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	char err[256];

	config_defaults(&cfg);
	int rc = config_parse(&cfg, "fuzz.conf", (const char *)data, size, err, sizeof(err));
	/* Every failure must come with a "FILE:LINE: " message. */
	if (rc != 0 && strncmp(err, "fuzz.conf:", 10) != 0)
		__builtin_trap();
	/* The list must stay NULL-terminated and non-empty whatever happened. */
	if (cfg.listen == NULL || cfg.listen[0] == NULL)
		__builtin_trap();
	config_free(&cfg);
	config_free(&cfg);
	return 0;
}
