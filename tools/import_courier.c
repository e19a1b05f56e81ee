/* tpops-import courier: not in this build yet. */
#include <stdio.h>
#include <sysexits.h>

#include "import.h"

int import_courier(int argc, char **argv, struct db *db, const struct config *cfg,
		   struct import_options *opt, struct import_stats *st)
{
	fprintf(stderr, "tpops-import: the courier source is not in this build yet\n");
	return EX_UNAVAILABLE;
}
