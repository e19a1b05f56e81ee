/* tpops-userdel: remove a POP3 user. Its stored messages are kept (rows in
 * `msg`, or its Maildir): mail is never deleted as a side effect. */
#include <stdio.h>

#include "tool_common.h"

static const char usage_text[] = "usage: tpops-userdel [-c FILE] LOGIN\n"
				 "removes the user; its stored messages are kept\n";

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH;
	int first = tool_simple_options(argc, argv, "tpops-userdel", usage_text, 1, 1, &config_path);
	struct config cfg;
	struct db *db = tool_open("tpops-userdel", config_path, &cfg);
	int status = db->ops->user_delete(db, argv[first]);
	if (status == DB_NOT_FOUND)
		fprintf(stderr, "tpops-userdel: no user with login \"%s\"\n", argv[first]);
	else if (status != DB_OK)
		fprintf(stderr, "tpops-userdel: %s\n", db_error(db));
	else
		printf("tpops-userdel: removed %s\n", argv[first]);
	tool_close(db, &cfg);
	return tool_exit_status(status);
}
