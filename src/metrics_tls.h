/* TLS handshakes counted for the metrics (tpops_tls_handshakes_total). */
#ifndef TPOPS_METRICS_TLS_H
#define TPOPS_METRICS_TLS_H
#include <openssl/ssl.h>

/* Every connection made from ctx is counted: a finished handshake, or
 * one that started and never finished (the connection freed first). */
void metrics_tls_watch(SSL_CTX *ctx);

#endif
