/* tpops-passwd: change a POP3 user's password. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "password.h"
#include "tool_common.h"
#include "xalloc.h"

static const char usage_text[] =
	"usage: tpops-passwd [-c FILE] [--plain | --scheme SCHEME] LOGIN PASSWORD\n"
	"  PASSWORD - reads the password from standard input.\n";

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH, *scheme = PASSWORD_DEFAULT_SCHEME;
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'}, {"plain", no_argument, NULL, 'p'},
		{"scheme", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:ps:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'p':
			scheme = "PLAIN";
			break;
		case 's':
			scheme = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return EX_OK;
		case 'V':
			tool_version("tpops-passwd");
			return EX_OK;
		default:
			fputs(usage_text, stderr);
			return EX_USAGE;
		}
	}
	if (argc - optind != 2) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	if (!password_scheme_known(scheme)) {
		fprintf(stderr, "tpops-passwd: unknown password scheme \"%s\"\n", scheme);
		return EX_USAGE;
	}
	struct config cfg;
	struct db *db = tool_open("tpops-passwd", config_path, &cfg);
	char *password = tool_password_arg("tpops-passwd", argv[optind + 1]);
	char err[256];
	char *stored = password_hash(scheme, password, err, sizeof err);
	free_secret(password, strlen(password));
	if (stored == NULL) {
		fprintf(stderr, "tpops-passwd: %s\n", err);
		tool_close(db, &cfg);
		return EX_SOFTWARE;
	}
	int status = db->ops->user_set_password(db, argv[optind], stored);
	free_secret(stored, strlen(stored));
	if (status == DB_NOT_FOUND)
		fprintf(stderr, "tpops-passwd: no user with login \"%s\"\n", argv[optind]);
	else if (status != DB_OK)
		fprintf(stderr, "tpops-passwd: %s\n", db_error(db));
	else
		printf("tpops-passwd: password of %s changed\n", argv[optind]);
	tool_close(db, &cfg);
	return tool_exit_status(status);
}
