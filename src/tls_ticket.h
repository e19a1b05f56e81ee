/* TLS session tickets: the keys that encrypt them, held in memory only,
 * shared by every thread and every SSL_CTX (a SIGHUP keeps them), and
 * replaced every TLS_TicketKeyLifetime seconds. */
#ifndef TPOPS_TLS_TICKET_H
#define TPOPS_TLS_TICKET_H
#include <openssl/ssl.h>

/* Lets ctx issue and accept tickets under the shared keys; lifetime is
 * the rotation interval in seconds (a ticket is accepted while its key is
 * the current or the previous one: between one and two lifetimes). */
void tls_ticket_attach(SSL_CTX *ctx, int lifetime);
/* Forgets the keys (at exit): they never reach the disk. */
void tls_ticket_forget(void);

#endif
