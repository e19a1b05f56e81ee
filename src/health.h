/* The database probe behind GET /health: a thread of its own opens one
 * database connection and runs a cheap query every few seconds, so the
 * answer is fresh without a health check ever waiting for a database
 * that does not answer, and no storage worker is taken from sessions. */
#ifndef TPOPS_HEALTH_H
#define TPOPS_HEALTH_H
#include <stdbool.h>

#include "config.h"

/* Seconds between probes; a result older than HEALTH_PROBE_STALE counts
 * as down (the probe itself hangs). */
#define HEALTH_PROBE_INTERVAL 2
#define HEALTH_PROBE_STALE 15

void health_probe_start(const struct config *cfg);
void health_probe_stop(void);
/* True when the last probe, not older than HEALTH_PROBE_STALE, worked;
 * why (when not NULL) says what failed. */
bool health_database_up(char *why, size_t whylen);

#endif
