/* The standing daemon: set-up (listeners, privilege drop, detaching, PID
 * file, signal events, threads) and serving until SIGTERM. */
#ifndef TPOPS_DAEMON_H
#define TPOPS_DAEMON_H
#include <stdbool.h>

#include "config.h"

/* Serves with cfg, which it takes over, until SIGTERM or SIGINT; SIGHUP
 * reads config_path again; verbose logs every command whatever the
 * configuration says. Called as root, it binds and then drops to User.
 * Returns the exit status; a set-up that cannot go on exits the process
 * with its reason logged. */
int daemon_run(struct config *cfg, const char *config_path, bool verbose);

#endif
