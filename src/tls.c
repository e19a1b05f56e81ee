/* The OpenSSL server context, swapped as a whole on reload. */
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "metrics_tls.h"
#include "ktls.h"
#include "log.h"
#include "tls_ticket.h"

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *current;
static int kernel_tls = -1; /* -1: not asked yet; the kernel's answer at start-up */
static atomic_bool warned_user_space; /* a session kept in user space was logged */

/* Asked once, at the first load (as root, so that asking may load the
 * kernel module), and said in the log: which path encrypts. */
static bool kernel_tls_offered(void)
{
	if (kernel_tls >= 0)
		return kernel_tls == 1;
	char why[256] = "";
#ifdef OPENSSL_NO_KTLS
	kernel_tls = 0;
	snprintf(why, sizeof why, "this OpenSSL is built without kernel TLS");
#else
	kernel_tls = ktls_kernel_offers(why, sizeof why) ? 1 : 0;
#endif
	if (kernel_tls == 1)
		log_info("TLS: kernel TLS (kTLS): after each handshake OpenSSL hands the session's keys "
			 "to the kernel, which encrypts its records where it has the cipher (POP3S and "
			 "STLS; tpops_tls_sessions_total says who did)");
	else
		log_info("TLS: records are encrypted in user space by OpenSSL; no kernel TLS: %s", why);
	return kernel_tls == 1;
}

bool tls_kernel_sends(const SSL *ssl)
{
#ifndef OPENSSL_NO_KTLS
	return BIO_get_ktls_send(SSL_get_wbio(ssl)) != 0;
#else
	return false;
#endif
}

bool tls_records_by_kernel(const SSL *ssl)
{
	bool kernel = tls_kernel_sends(ssl);
	/* kernel_tls is set once, before the first context is published (under
	 * the mutex tls_session_new takes), so every handshake sees it set */
	if (!kernel && kernel_tls == 1 && !atomic_exchange(&warned_user_space, true))
		log_warn("TLS: kernel TLS is offered, but the kernel did not take the records of a "
			 "%s session with %s: OpenSSL encrypts them in user space (is a kernel crypto "
			 "module for that cipher missing?); this is said once, "
			 "tpops_tls_sessions_total{encrypted_by=\"openssl\"} counts such sessions",
			 SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	return kernel;
}

enum tls_sendfile_result tls_sendfile(SSL *ssl, int fd, uint64_t *offset, uint64_t *left,
				      size_t most, bool *peer_gone_r, char *err, size_t errlen)
{
	*peer_gone_r = false;
	size_t sent = 0;
	while (*left > 0 && sent < most) {
		size_t n = *left < most - sent ? (size_t)*left : most - sent;
		errno = 0;
		ossl_ssize_t r = SSL_sendfile(ssl, fd, (off_t)*offset, n, 0);
		int e = errno;
		if (r > 0) {
			*offset += (uint64_t)r;
			*left -= (uint64_t)r;
			sent += (size_t)r;
			continue;
		}
		/* SSL_sendfile is sendfile(2) on the socket once OpenSSL has
		 * flushed its own output (with EAGAIN when it could not): errno
		 * says what happened, and OpenSSL's queue only "uninitialized" */
		unsigned long ssl_error = ERR_peek_error();
		ERR_clear_error(); /* else the next SSL_read on this thread reports it */
		if (r < 0 && e == EINTR)
			continue;
		if (r < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EBUSY))
			return TLS_SENDFILE_WAIT;
		if (r == 0) {
			snprintf(err, errlen, "the file ended %llu octets early",
				 (unsigned long long)*left);
			return TLS_SENDFILE_FAILED;
		}
		if (e == EPIPE || e == ECONNRESET || e == ETIMEDOUT || e == ENOTCONN) {
			*peer_gone_r = true;
			snprintf(err, errlen, "%s", strerror(e));
			return TLS_SENDFILE_FAILED;
		}
		if (e == EINVAL || e == ENOSYS || e == EOPNOTSUPP) { /* nothing was sent */
			snprintf(err, errlen, "sendfile: %s", strerror(e));
			return TLS_SENDFILE_REFUSED;
		}
		if (e == 0) { /* OpenSSL's own checks: no kernel TLS on ssl after all */
			char reason[200] = "refused";
			if (ssl_error != 0)
				ERR_error_string_n(ssl_error, reason, sizeof reason);
			snprintf(err, errlen, "SSL_sendfile: %s", reason);
			return TLS_SENDFILE_REFUSED;
		}
		snprintf(err, errlen, "sendfile: %s", strerror(e));
		return TLS_SENDFILE_FAILED;
	}
	return *left == 0 ? TLS_SENDFILE_DONE : TLS_SENDFILE_MORE;
}

static void openssl_error(char *err, size_t errlen, const char *what, const char *path)
{
	char reason[256] = "unknown error";
	unsigned long e = ERR_get_error();
	if (e != 0)
		ERR_error_string_n(e, reason, sizeof reason);
	ERR_clear_error();
	snprintf(err, errlen, "%s %s: %s", what, path, reason);
}

int tls_load(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->tls_cert == NULL && cfg->tls_key == NULL)
		return 0;
	if (cfg->tls_cert == NULL || cfg->tls_key == NULL) {
		snprintf(err, errlen, "%s: TLS needs both TLS_Cert and TLS_Key", cfg->path);
		return -1;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		openssl_error(err, errlen, "creating the TLS context", "");
		return -1;
	}
	/* TLS 1.2 at least; ciphers: the system's policy (openssl.cnf) */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle sessions keep no buffers */
	metrics_tls_watch(ctx);
	tls_ticket_attach(ctx, cfg->tls_ticket_key_lifetime);
#ifndef OPENSSL_NO_KTLS
	if (kernel_tls_offered())
		SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
#else
	kernel_tls_offered();
#endif
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
		openssl_error(err, errlen, "TLS_Cert", cfg->tls_cert);
		SSL_CTX_free(ctx);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
		openssl_error(err, errlen, "TLS_Key", cfg->tls_key);
		SSL_CTX_free(ctx);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		openssl_error(err, errlen, "TLS_Key does not match TLS_Cert", cfg->tls_key);
		SSL_CTX_free(ctx);
		return -1;
	}
	pthread_mutex_lock(&mutex);
	SSL_CTX *old = current;
	current = ctx;
	pthread_mutex_unlock(&mutex);
	SSL_CTX_free(old); /* sessions made from it hold their own reference */
	return 0;
}

bool tls_available(void)
{
	pthread_mutex_lock(&mutex);
	bool yes = current != NULL;
	pthread_mutex_unlock(&mutex);
	return yes;
}

SSL *tls_session_new(void)
{
	/* SSL_new (tens of microseconds) outside the lock, which every
	 * handshake thread takes: only the reference is taken under it */
	pthread_mutex_lock(&mutex);
	SSL_CTX *ctx = current;
	if (ctx != NULL)
		SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&mutex);
	if (ctx == NULL)
		return NULL;
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL holds one of its own */
	return ssl;
}

void tls_unload(void)
{
	pthread_mutex_lock(&mutex);
	SSL_CTX_free(current);
	current = NULL;
	pthread_mutex_unlock(&mutex);
	tls_ticket_forget();
}
