/* What the admin commands share: options, config, privileges, database. */
#include "tool_common.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "privsep.h"
#include "xalloc.h"

static struct db *open_as_daemon(const char *prog, const char *config_path, struct config *cfg,
				 bool create)
{
	char err[1024];
	if (config_load(cfg, config_path, err, sizeof err) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		exit(EX_CONFIG);
	}
	if (privsep_drop(cfg->user, cfg->group, err, sizeof err) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		exit(EX_CONFIG);
	}
	struct db *db = NULL;
	int status = create ? db_create(cfg, &db, err, sizeof err) : db_open(cfg, &db, err, sizeof err);
	if (status != DB_OK) {
		fprintf(stderr, "%s: %s\n", prog, err);
		exit(status == DB_PERMFAIL ? EX_CONFIG : EX_TEMPFAIL);
	}
	return db;
}

struct db *tool_open(const char *prog, const char *config_path, struct config *cfg)
{
	return open_as_daemon(prog, config_path, cfg, false);
}

struct db *tool_open_create(const char *prog, const char *config_path, struct config *cfg)
{
	return open_as_daemon(prog, config_path, cfg, true);
}

void tool_close(struct db *db, struct config *cfg)
{
	db_close(db);
	config_free(cfg);
}

char *tool_password_arg(const char *prog, const char *arg)
{
	if (strcmp(arg, "-") != 0)
		return xstrdup(arg);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, stdin);
	if (n <= 0) {
		fprintf(stderr, "%s: no password on standard input\n", prog);
		free(line);
		exit(EX_USAGE);
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	char *password = xstrdup(line);
	free_secret(line, cap);
	return password;
}

int tool_exit_status(int db_status)
{
	switch (db_status) {
	case DB_OK:
		return EX_OK;
	case DB_NOT_FOUND:
		return EX_NOUSER;
	case DB_CONFLICT:
		return EX_DATAERR;
	case DB_QUOTA:
		return EX_CANTCREAT;
	case DB_TEMPFAIL:
		return EX_TEMPFAIL;
	default:
		return EX_SOFTWARE;
	}
}

void tool_version(const char *prog)
{
	printf("%s (tpops) %s\n", prog, TPOPS_VERSION);
}

int tool_simple_options(int argc, char **argv, const char *prog, const char *usage, int min,
			int max, const char **config_path)
{
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
			*config_path = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(EX_OK);
		case 'V':
			tool_version(prog);
			exit(EX_OK);
		default:
			fputs(usage, stderr);
			exit(EX_USAGE);
		}
	}
	int operands = argc - optind;
	if (operands < min || operands > max) {
		fputs(usage, stderr);
		exit(EX_USAGE);
	}
	return optind;
}
