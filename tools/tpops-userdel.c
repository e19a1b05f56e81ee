/* tpops-userdel: remove a POP3 user (its messages in the `msg` table stay
 * until removed with --messages). */
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
			printf("usage: tpops-userdel [-c FILE] LOGIN\n");
			return EX_OK;
		case 'V':
			tool_version("tpops-userdel");
			return EX_OK;
		default:
			fprintf(stderr, "usage: tpops-userdel [-c FILE] LOGIN\n");
			return EX_USAGE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "usage: tpops-userdel [-c FILE] LOGIN\n");
		return EX_USAGE;
	}
	struct config cfg;
	struct db *db = tool_open("tpops-userdel", config_path, &cfg);
	int status = db->ops->user_delete(db, argv[optind]);
	if (status == DB_NOT_FOUND)
		fprintf(stderr, "tpops-userdel: no user with login \"%s\"\n", argv[optind]);
	else if (status != DB_OK)
		fprintf(stderr, "tpops-userdel: %s\n", db_error(db));
	else
		printf("tpops-userdel: removed %s\n", argv[optind]);
	tool_close(db, &cfg);
	return tool_exit_status(status);
}
