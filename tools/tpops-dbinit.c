/* tpops-dbinit: create the database schema, or upgrade an older one in
 * place. Safe to run again: what exists is kept. */
#include <stdio.h>

#include "password.h"
#include "tool_common.h"

static const char usage_text[] = "usage: tpops-dbinit [-c FILE]\n"
				 "creates the tables tpops needs, or upgrades them in place\n";

static void count_plaintext(const struct user *u, void *ctx)
{
	if (password_plaintext(u->passwd) != NULL)
		++*(size_t *)ctx;
}

/* A database of the original TPOPS stores passwords in plain text, and its
 * users' clients may log in with APOP, which tpops offers only when told. */
static void apop_advice(struct db *db, const struct config *cfg)
{
	size_t plaintext = 0;
	if (cfg->apop || db->ops->user_list(db, count_plaintext, &plaintext) != DB_OK ||
	    plaintext == 0)
		return;
	printf("tpops-dbinit: %zu users have plaintext passwords (as the original TPOPS "
	       "stored them); if their mail clients log in with APOP, set \"APOP: yes\" in "
	       "tpops.conf (see tpops.conf(5))\n",
	       plaintext);
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH;
	tool_simple_options(argc, argv, "tpops-dbinit", usage_text, 0, 0, &config_path);
	struct config cfg;
	struct db *db = tool_open_create("tpops-dbinit", config_path, &cfg);
	int status = db->ops->schema_install(db);
	if (status != DB_OK) {
		fprintf(stderr, "tpops-dbinit: %s\n", db_error(db));
	} else {
		printf("tpops-dbinit: %s database schema is ready\n", db->ops->name);
		apop_advice(db, &cfg);
	}
	tool_close(db, &cfg);
	return tool_exit_status(status);
}
