/* The OpenSSL server context: loaded from TLS_Cert/TLS_Key before the
 * privilege drop, replaced on SIGHUP while running sessions keep theirs. */
#ifndef TPOPS_TLS_H
#define TPOPS_TLS_H
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Loads the certificate chain and key. Without TLS_Cert, TLS stays off
 * and 0 is returned. -1 with a message in err. */
int tls_load(const struct config *cfg, char *err, size_t errlen);
bool tls_available(void);
/* A new server-side SSL object from the current context, or NULL. */
SSL *tls_session_new(void);
/* At the end of a handshake: whether the kernel encrypts the session's
 * records (kTLS). Where kernel TLS was offered at start and the kernel did
 * not take a session (its cipher unsupported, a crypto module missing),
 * logs one warning per daemon. */
bool tls_records_by_kernel(const SSL *ssl);
void tls_unload(void);

#endif
