/* Start-up checks: the configuration against this build, the database. */
#include "startup_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "lmtp_server.h"
#include "log.h"
#include "maildrop.h"

int startup_check_database(const struct config *cfg, bool fatal)
{
	char err[512];
	struct db *db = NULL;
	int status = db_open(cfg, &db, err, sizeof err);
	if (status == DB_OK) {
		/* the listing a login makes: it needs every column of msg this
		 * version reads (msg.uidl came later), so that a schema not yet
		 * upgraded is found here, not at each login */
		struct db_msg *msgs = NULL;
		size_t count = 0;
		status = db->ops->msg_list(db, 0, &msgs, &count);
		free(msgs);
		if (status == DB_OK && db->ops->schema_check != NULL)
			status = db->ops->schema_check(db);
		if (status != DB_OK && strstr(db_error(db), "tpops-dbinit") != NULL)
			snprintf(err, sizeof err, "%s", db_error(db));
		else if (status != DB_OK)
			snprintf(err, sizeof err,
				 "%s (create the schema, or upgrade it, with tpops-dbinit)",
				 db_error(db));
		db_close(db);
	}
	if (status == DB_OK)
		return 0;
	if (fatal || status == DB_PERMFAIL)
		log_error("database: %s", err);
	else
		log_warn("database: %s; logins fail with [SYS/TEMP] until it works", err);
	/* -t (fatal) fails on any error, a temporary one included: it must
	 * not report "reached" for a database it could not reach */
	return fatal || status == DB_PERMFAIL ? -1 : 0;
}

int startup_check_config(const struct config *cfg, char *err, size_t errlen)
{
	if (maildrop_backend(cfg) == NULL) {
		snprintf(err, errlen, "%s: Mailbox: no backend for this mailbox type", cfg->path);
		return -1;
	}
	if (db_engine(cfg) == NULL) {
		snprintf(err, errlen, "%s: Database: no driver for this engine", cfg->path);
		return -1;
	}
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
		snprintf(err, errlen, "%s: TLS needs both TLS_Cert and TLS_Key", cfg->path);
		return -1;
	}
	if (cfg->require_tls && cfg->tls_cert == NULL) {
		snprintf(err, errlen, "%s: RequireTLS: yes needs TLS_Cert and TLS_Key", cfg->path);
		return -1;
	}
	if (lmtp_server_check_config(cfg, err, errlen) != 0)
		return -1;
	return 0;
}
