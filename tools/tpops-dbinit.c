/* tpops-dbinit: create the database schema, or upgrade an older one in
 * place. Safe to run again: what exists is kept. */
#include <getopt.h>
#include <stdio.h>

#include "tool_common.h"

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH;
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			printf("usage: tpops-dbinit [-c FILE]\n"
			       "creates the tables tpops needs, or upgrades them in place\n");
			return EX_OK;
		case 'V':
			tool_version("tpops-dbinit");
			return EX_OK;
		default:
			fprintf(stderr, "usage: tpops-dbinit [-c FILE]\n");
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "usage: tpops-dbinit [-c FILE]\n");
		return EX_USAGE;
	}
	struct config cfg;
	struct db *db = tool_open("tpops-dbinit", config_path, &cfg);
	int status = db->ops->schema_install(db);
	if (status != DB_OK)
		fprintf(stderr, "tpops-dbinit: %s\n", db_error(db));
	else
		printf("tpops-dbinit: %s database schema is ready\n", db->ops->name);
	tool_close(db, &cfg);
	return tool_exit_status(status);
}
