/* Every fixed limit and compiled-in default of tpops, with the reason for it. */
#ifndef TPOPS_TPOPS_LIMITS_H
#define TPOPS_TPOPS_LIMITS_H

/* RFC 2449 section 4: a command line is at most 255 octets including the
 * CRLF. A longer line gets one -ERR and is discarded up to its end. */
#define POP3_MAX_LINE 255

/* A client that sends this many octets without any line end is not a POP3
 * client; it is cut off so that it cannot make the input buffer grow. */
#define POP3_MAX_JUNK 16384

/* RFC 2449 section 4: an argument is at most 40 octets. PASS is the
 * exception: RFC 1939 lets the password take the rest of the line. */
#define POP3_MAX_ARG 40

/* RFC 2449 section 4: a unique-id is 1 to 70 characters 0x21-0x7E. */
#define POP3_MAX_UIDL 70

/* Message numbers and TOP line counts above this are refused as junk
 * (popa3d uses the same bound); no maildrop holds a billion messages. */
#define POP3_MAX_NUMBER 0x3FFFFFFFu

/* Consecutive commands that get -ERR before the session is closed. High
 * enough for clients that probe (CAPA, AUTH, XTND...), low enough to end a
 * client that sends junk in a loop. */
#define POP3_MAX_BAD_COMMANDS 50

/* Size of one piece of a message read by a storage worker for RETR/TOP,
 * and the output buffer level below which the next piece is fetched. */
#define RETR_CHUNK_SIZE (256 * 1024)
#define RETR_LOW_WATER (128 * 1024)

/* Pipelined commands are not read while the reply queue holds more than
 * this (a client that pipelines RETRs without reading). */
#define OUTPUT_HIGH_WATER (1024 * 1024)

/* Defaults of tpops.conf (SPEC section 2). */
#define DEFAULT_PORT 110
#define DEFAULT_CONNECTION_KEEP_TIME 3600
#define DEFAULT_COMMAND_TIMEOUT 600 /* RFC 1939 section 3: at least 10 minutes */
#define DEFAULT_SQLITE_PATH "/var/lib/tpops/tpops.db"
#define DEFAULT_CONFIG_PATH SYSCONFDIR "/tpops.conf"
#define DEFAULT_MAX_CONNECTIONS 10000
#define DEFAULT_MAX_CONNECTIONS_PER_IP 50
#define DEFAULT_AUTH_FAILURE_DELAY 2
#define DEFAULT_LOCK_LEASE 60
#define DEFAULT_RUN_USER "tpops"
#define DEFAULT_RUN_GROUP "tpops"

/* SQLite waits this long for a lock held by another process before the
 * operation fails with a temporary error. */
#define SQLITE_BUSY_TIMEOUT_MS 5000

#endif
