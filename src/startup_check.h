/* Start-up checks shared by the first start, `tpops -t` and SIGHUP: what a
 * configuration asks that this build cannot give, and whether the database
 * it names can be reached. */
#ifndef TPOPS_STARTUP_CHECK_H
#define TPOPS_STARTUP_CHECK_H
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* -1 with a message in err when cfg names a backend, driver or TLS set-up
 * this build or start-up cannot serve. */
int startup_check_config(const struct config *cfg, char *err, size_t errlen);

/* Opens the database once, so that a wrong path or a missing schema shows
 * at start-up rather than at the first login. fatal (for -t): any error
 * fails; otherwise a temporary one is only a warning. Logs what failed. */
int startup_check_database(const struct config *cfg, bool fatal);

#endif
