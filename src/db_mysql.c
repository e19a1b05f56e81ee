/* The SQL database on MySQL/MariaDB, through MariaDB Connector/C: the
 * engine's operations. Each job has its file:
 *   db_mysql_conn.c    connecting, error classes, when to run again
 *   db_mysql_stmt.c    the SQL of the prepared statements and their helpers
 *   db_mysql_users.c   users
 *   db_mysql_locks.c   maildrop lock leases
 *   db_mysql_msg.c     messages: list, read, delete, store, usage
 *   db_mysql_schema.c  creating and upgrading the schema */
#include "db_mysql.h"

const struct db_ops db_mysql_ops = {
	.name = "mysql",
	.reconnects = true,
	.open = mysql_open,
	.close = mysql_close_db,
	.schema_install = mysql_schema_install,
	.schema_check = mysql_schema_check,
	.user_by_login = mysql_user_by_login,
	.user_by_mail = mysql_user_by_mail,
	.user_add = mysql_user_add,
	.user_delete = mysql_user_delete,
	.user_set_password = mysql_user_set_password,
	.user_list = mysql_user_list,
	.user_samples = mysql_user_samples,
	.salt_key = mysql_salt_key,
	.lock_acquire = mysql_lock_acquire,
	.lock_renew = mysql_lock_renew,
	.lock_release = mysql_lock_release,
	.msg_list = mysql_msg_list,
	.msg_read = mysql_msg_read,
	.msg_delete = mysql_msg_delete,
	.msg_store = mysql_msg_store,
	.msg_import = mysql_msg_import,
	.msg_imported = mysql_msg_imported,
	.msg_usage = mysql_msg_usage,
	.error = mysql_error_text,
};
