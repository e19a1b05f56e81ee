/* What the admin commands share: options, config, privileges, database. */
#ifndef TPOPS_TOOL_COMMON_H
#define TPOPS_TOOL_COMMON_H
#include <stdbool.h>
#include <stddef.h>
#include <sysexits.h>

#include "config.h"
#include "db.h"
#include "tpops_limits.h"

/* Loads the configuration (exit 78 on error), drops root to User/Group as
 * the daemon does (so that files it creates belong to that user), and opens
 * the database (exit 75 when it cannot be reached). */
struct db *tool_open(const char *prog, const char *config_path, struct config *cfg);
/* tool_open that creates a missing database file (tpops-dbinit): no other
 * program creates one. */
struct db *tool_open_create(const char *prog, const char *config_path, struct config *cfg);
void tool_close(struct db *db, struct config *cfg);

/* PASSWORD "-" reads one line from standard input (so that the password
 * appears in no process list). Returns malloc'd text; exits 64 on error. */
char *tool_password_arg(const char *prog, const char *arg);

/* The sysexits status for a database status. */
int tool_exit_status(int db_status);

/* Options of a tool that takes only -c FILE, --help and --version: sets
 * *config_path, exits 0 after --help/--version and 64 on a bad option or
 * when the count of operands is outside [min, max]; returns the index of
 * the first operand. usage is the full usage text. */
int tool_simple_options(int argc, char **argv, const char *prog, const char *usage, int min,
			int max, const char **config_path);

/* Prints "--version" output. */
void tool_version(const char *prog);

#endif
