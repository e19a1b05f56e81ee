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
	/* MetricsListen: a socket path, or an address with a port; one that
	 * is not loopback only when "public" was written */
	if (cfg.metrics_listen != NULL && cfg.metrics_listen[0] != '/' &&
	    (cfg.metrics_port < 1 || cfg.metrics_port > 65535))
		__builtin_trap();
	if (cfg.control_socket != NULL && cfg.control_socket[0] != '/')
		__builtin_trap();
	config_free(&cfg);
	config_free(&cfg);
	return 0;
}
