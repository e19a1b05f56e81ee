/* tpops-users: list the POP3 users (never their passwords). */
#include <stdio.h>
#include <string.h>

#include "tool_common.h"

/* The scheme of a stored password, for the listing. */
static const char *scheme_of(const char *stored)
{
	static __thread char scheme[32];
	if (stored[0] == '{') {
		const char *end = strchr(stored, '}');
		if (end != NULL && (size_t)(end - stored) < sizeof scheme) {
			snprintf(scheme, sizeof scheme, "%.*s", (int)(end - stored - 1), stored + 1);
			return scheme;
		}
	}
	if (strncmp(stored, "$6$", 3) == 0)
		return "SHA512-CRYPT";
	if (strncmp(stored, "$y$", 3) == 0)
		return "YESCRYPT";
	if (strncmp(stored, "$2", 2) == 0)
		return "BLF-CRYPT";
	if (strncmp(stored, "$argon2id$", 10) == 0)
		return "ARGON2ID";
	return "PLAIN";
}

static void print_user(const struct user *u, void *ctx)
{
	printf("%lld\t%s\t%s\t%s\t%lld\t%s\n", (long long)u->uid, u->login, u->mail,
	       u->maildir[0] ? u->maildir : "-", (long long)u->quota, scheme_of(u->passwd));
}

static const char usage_text[] = "usage: tpops-users [-c FILE]\n"
				 "prints uid, login, mail, maildir, quota, password scheme\n";

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH;
	tool_simple_options(argc, argv, "tpops-users", usage_text, 0, 0, &config_path);
	struct config cfg;
	struct db *db = tool_open("tpops-users", config_path, &cfg);
	int status = db->ops->user_list(db, print_user, NULL);
	if (status != DB_OK)
		fprintf(stderr, "tpops-users: %s\n", db_error(db));
	tool_close(db, &cfg);
	return tool_exit_status(status);
}
