/* TLS handshakes for the metrics, watched through OpenSSL's own hooks so
 * that no session code counts them: the info callback sees a handshake
 * start and finish (and, at the finish, who encrypts the session's
 * records), and the free hook of a per-connection mark sees a connection
 * go before its handshake finished. */
#include "metrics_tls.h"

#include <pthread.h>

#include "metrics.h"
#include "tls.h"

/* The mark: none, started, or finished (counted once). */
#define HANDSHAKE_STARTED ((void *)1)
#define HANDSHAKE_DONE ((void *)2)

static int mark_index = -1;
static pthread_once_t mark_once = PTHREAD_ONCE_INIT;

static void on_free(void *parent, void *mark, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	if (mark == HANDSHAKE_STARTED)
		metrics_tls_handshake(false);
}

static void make_index(void)
{
	mark_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, on_free);
}

static void on_info(const SSL *ssl, int where, int ret)
{
	void *mark = SSL_get_ex_data(ssl, mark_index);
	if (mark == HANDSHAKE_DONE)
		return; /* TLS 1.3 tickets and the like are not new handshakes */
	if ((where & SSL_CB_HANDSHAKE_START) && mark == NULL) {
		SSL_set_ex_data((SSL *)ssl, mark_index, HANDSHAKE_STARTED);
	} else if (where & SSL_CB_HANDSHAKE_DONE) {
		SSL_set_ex_data((SSL *)ssl, mark_index, HANDSHAKE_DONE);
		metrics_tls_handshake(true);
		metrics_tls_session(tls_records_by_kernel(ssl));
	}
}

void metrics_tls_watch(SSL_CTX *ctx)
{
	pthread_once(&mark_once, make_index);
	if (mark_index >= 0)
		SSL_CTX_set_info_callback(ctx, on_info);
}
