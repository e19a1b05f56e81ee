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
/* RETR read-ahead (SQL stores): at most this many octets held or asked
 * for by all sessions together. */
#define READ_AHEAD_TOTAL_MAX (32u * 1024 * 1024)

/* SQL store: a message body over MSG_INLINE_MAX octets is stored in
 * msg_part rows of MSG_PART_SIZE, so that RETR reads any piece of it with
 * one indexed lookup instead of walking a huge BLOB from its start. */
#define MSG_INLINE_MAX (1024 * 1024)
#define MSG_PART_SIZE (256 * 1024)

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
/* Repeated failures from one address or for one login double the delay up
 * to this many seconds. */
#define DEFAULT_AUTH_FAILURE_DELAY_MAX 30
#define DEFAULT_LOCK_LEASE 60
/* LMTP: larger than Postfix's default message_size_limit (10240000), so
 * that Postfix refuses a too large message before it is queued. */
#define DEFAULT_LMTP_MAX_MESSAGE_SIZE (64 * 1024 * 1024)
/* RFC 5321 4.5.3.2: 5 minutes for a command, 3 for each data block. */
#define DEFAULT_LMTP_TIMEOUT 300
/* Each LMTP connection may hold a message of LMTP_MaxMessageSize in
 * memory: the product bounds what LMTP can take. Postfix opens at most
 * 20 per destination by default (default_destination_concurrency_limit). */
#define DEFAULT_LMTP_MAX_CONNECTIONS 100
/* TLS session tickets: a new key every hour; a ticket opens for one to two
 * hours, so a client that polls every few minutes resumes, and a key that
 * leaks reveals at most two hours of sessions. */
#define DEFAULT_TLS_TICKET_KEY_LIFETIME 3600

/* A POP3S connection has this long at most (less when CommandTimeout is
 * shorter), from accept, to finish its TLS handshake: a peer that sends
 * nothing holds a slot no longer. */
#define TLS_HANDSHAKE_TIMEOUT 30
/* The nice value of the threads that run TLS handshakes: the lowest
 * priority, so that under load the I/O threads that serve logged-in
 * sessions get the CPU first (CFS weight 1024 against 15), while CPU
 * nobody else wants still goes to handshakes. Against +5, during a
 * handshake storm RETRs kept 0.68 instead of 0.57 of their throughput, at
 * 2 % fewer handshakes/s (docs/BENCHMARKS.md, "Handshakes off the
 * threads that serve sessions"). */
#define TLS_HANDSHAKE_NICE 19
#define DEFAULT_RUN_USER "tpops"
#define DEFAULT_RUN_GROUP "tpops"
/* tpops-admin's Unix socket; /run/tpops is made at start-up when missing
 * (systemd's RuntimeDirectory=tpops makes it too). */
#define DEFAULT_CONTROL_SOCKET "/run/tpops/control"

/* SQLite waits this long for a lock held by another process before the
 * operation fails with a temporary error. */
#define SQLITE_BUSY_TIMEOUT_MS 5000

/* MySQL/MariaDB (db_mysql*.c). A server that does not answer a connection
 * attempt within MYSQL_CONNECT_TIMEOUT seconds counts as down, so that a
 * login gets -ERR [SYS/TEMP] and tpops-store exits 75 quickly; a query
 * that gets no reply for MYSQL_IO_TIMEOUT seconds is a lost connection. */
#define MYSQL_CONNECT_TIMEOUT 3
#define MYSQL_IO_TIMEOUT 60
/* The retry policy (db_mysql_retry.c): an operation runs at most
 * MYSQL_RETRY_ATTEMPTS times, and no attempt starts after
 * MYSQL_RETRY_BUDGET_MS. The wait before attempt n+1 is drawn from
 * [0, base * 2^(n-1)] (base MYSQL_RETRY_CONFLICT_MS after a conflict,
 * MYSQL_RETRY_NODE_MS after a node failure, none before the first attempt
 * on the next host), at most MYSQL_RETRY_MAX_WAIT_MS. Two servers that
 * collide on one lease resolve in one or two attempts; a Galera node that
 * dies stalls the others' writes for a few seconds, which the budget
 * covers. */
#define MYSQL_RETRY_ATTEMPTS 8
#define MYSQL_RETRY_BUDGET_MS 15000
#define MYSQL_RETRY_CONFLICT_MS 10
#define MYSQL_RETRY_NODE_MS 250
#define MYSQL_RETRY_MAX_WAIT_MS 2000
/* A connection that failed over to another MySQL_Server host moves back
 * to the first one this many seconds after it was made, or at SIGHUP
 * (MySQL_FailbackTime). Long enough that a host that comes and goes does
 * not move every worker to and fro; short enough that a cluster's load
 * spreads again without the administrator. */
#define DEFAULT_MYSQL_FAILBACK_TIME 300
/* Largest message (header + body) stored in the seed's header and body
 * columns; larger ones keep the header there and the body in msg_part rows
 * of MYSQL_PART_SIZE. The seed's mediumtext held at most 16 MiB - 1, and a
 * value read or written in one piece must fit in the server's
 * max_allowed_packet (at least 16 MiB on MariaDB, 64 MiB on MySQL 8), so
 * the limit is also kept below half of the server's setting. */
#define MYSQL_INLINE_MAX (16 * 1024 * 1024 - 1)
#define MYSQL_PART_SIZE (256 * 1024)
/* Reading assumes no msg_part row is longer than this. */
#define MYSQL_PART_MAX (1024 * 1024)
/* Column values longer than this go to the server in pieces of this size
 * (mysql_stmt_send_long_data) rather than one copy of the whole value. */
#define MYSQL_LONG_DATA_PIECE (1024 * 1024)
/* Seed-era messages converted per transaction by the schema upgrade. */
#define MYSQL_UPGRADE_BATCH 200

#endif
