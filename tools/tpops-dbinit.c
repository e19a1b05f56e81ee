/* tpops-dbinit: create the database schema, or upgrade an older one in
 * place. Safe to run again: what exists is kept. */
#include <stdio.h>

#include "tool_common.h"

static const char usage_text[] = "usage: tpops-dbinit [-c FILE]\n"
				 "creates the tables tpops needs, or upgrades them in place\n";

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH;
	tool_simple_options(argc, argv, "tpops-dbinit", usage_text, 0, 0, &config_path);
	struct config cfg;
	struct db *db = tool_open_create("tpops-dbinit", config_path, &cfg);
	int status = db->ops->schema_install(db);
	if (status != DB_OK)
		fprintf(stderr, "tpops-dbinit: %s\n", db_error(db));
	else
		printf("tpops-dbinit: %s database schema is ready\n", db->ops->name);
	tool_close(db, &cfg);
	return tool_exit_status(status);
}
