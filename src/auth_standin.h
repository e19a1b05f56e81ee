/* The stand-in for unknown users: a password hash nobody knows, of the
 * costliest scheme the database holds, so that checking a password of an
 * unknown login costs what checking a real one costs; and that cost,
 * measured, below which no failure is answered (pop3_auth.c), so that the
 * cheaper schemes do not stand out either. Shared by every worker. */
#ifndef TPOPS_AUTH_STANDIN_H
#define TPOPS_AUTH_STANDIN_H
#include <stddef.h>

struct db;

/* Once per process (again after a database error): measures a stand-in
 * for the newest user of each stored scheme (db user_samples) and keeps
 * the costliest. On a worker; the first login waits for it. */
void auth_standin_calibrate(struct db *db);

/* Checks given against the stand-in (always a failure), at its cost. */
void auth_standin_verify(const char *given, size_t given_len);

/* A real user's check took seconds: a scheme noticeably costlier than the
 * stand-in's (a cost raised since calibration) becomes the stand-in. */
void auth_standin_note(const char *stored, double seconds);

/* What a check of the costliest stored scheme typically costs, in
 * seconds (a moving average per scheme). */
double auth_standin_seconds(void);

#endif
