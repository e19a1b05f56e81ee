/* inetd mode (--inetd, as later TPOPS versions had): one session on
 * standard input and output, started by inetd/xinetd/systemd Accept=yes. */
#ifndef TPOPS_INETD_H
#define TPOPS_INETD_H
#include "config.h"

/* Serves the session to its end; returns the exit status. */
int inetd_serve(const struct config *cfg);

#endif
