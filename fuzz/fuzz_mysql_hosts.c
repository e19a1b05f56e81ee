/* libFuzzer target: a MySQL_Server value -> mysql_hosts_parse, checked by
 * ASan/UBSan and by the parser's promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "db_mysql_hosts.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *spec = xstrndup((const char *)data, size);
	struct mysql_hosts h;
	char err[256];
	if (mysql_hosts_parse(spec, 3306, &h, err, sizeof err) == 0) {
		if (h.count == 0 || h.count > MYSQL_HOSTS_MAX)
			__builtin_trap();
		for (size_t i = 0; i < h.count; i++) {
			const struct mysql_host *x = &h.host[i];
			if (x->port == 0 || x->port > 65535)
				__builtin_trap();
			/* a name never holds a separator, a bracket or a control */
			if (x->name != NULL && (x->name[0] == '\0' || strpbrk(x->name, " \t,[]") != NULL))
				__builtin_trap();
		}
		mysql_hosts_free(&h);
	} else if (err[0] == '\0') {
		__builtin_trap();
	}
	free(spec);
	return 0;
}
