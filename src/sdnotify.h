/* Telling systemd how the service is doing (Type=notify) without
 * libsystemd: the sd_notify(3) protocol is one datagram of "KEY=value"
 * lines sent to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
 * abstract name when it starts with '@'). Without $NOTIFY_SOCKET (not run
 * by systemd, or Type=simple) every call does nothing and returns 0. */
#ifndef TPOPS_SDNOTIFY_H
#define TPOPS_SDNOTIFY_H

/* Sends state (e.g. "READY=1\nSTATUS=serving") as one datagram. 0 when
 * sent or when there is no manager to tell; -1 (errno set) when
 * $NOTIFY_SOCKET is malformed or the send failed. Thread-safe. */
int sdnotify(const char *state);

/* The usual messages: */
int sdnotify_ready(const char *status);  /* READY=1 (+ STATUS=status if not NULL) */
int sdnotify_reloading(void);            /* RELOADING=1 + MONOTONIC_USEC=now */
int sdnotify_stopping(void);             /* STOPPING=1 */
int sdnotify_status(const char *status); /* STATUS=status */

#endif
