/* SIGHUP: the configuration read again, for new sessions. */
#ifndef TPOPS_RELOAD_H
#define TPOPS_RELOAD_H
#include <stdbool.h>

#include "buf.h"
#include "config.h"
#include "server.h"

/* Reads the configuration at path again. When it is sound, it is put in
 * force for new sessions (server, workers, log level; verbose keeps every
 * command logged), what only a restart can change is logged, and the new
 * configuration is returned: the caller then releases old. When it is not,
 * the reason is logged and NULL returned: old stays in force. report (may
 * be NULL) gets the same lines, for tpops-admin reload. */
struct config *reload_config(const char *path, const struct config *old, struct server *srv,
			     bool verbose, struct buf *report);

#endif
