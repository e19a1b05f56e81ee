/* tpops-import pop3: not in this build yet. */
#include <stdio.h>
#include <sysexits.h>

#include "import.h"

void import_pop3_endpoint(const char *host, const char *port, bool tls)
{
}

int import_pop3(int argc, char **argv, struct db *db, const struct config *cfg,
		struct import_options *opt, struct import_stats *st)
{
	fprintf(stderr, "tpops-import: the pop3 source is not in this build yet\n");
	return EX_UNAVAILABLE;
}
