/* handshake_cost: the CPU time OpenSSL itself spends on the server side of
 * one TLS 1.3 handshake, full and resumed, with no network and no POP3.
 *
 *   handshake_cost CERT KEY [COUNT]
 *
 * A server and a client SSL talk through a BIO pair in this one process;
 * only the server's SSL_do_handshake calls are timed (CLOCK_THREAD_CPUTIME_ID).
 * Handshakes alternate: a full one, whose ticket (one per handshake, as
 * tpops sends) the next one resumes, and so on. This is the floor under
 * a POP3S session's server CPU that no server built on this OpenSSL can go
 * below; docs/BENCHMARKS.md compares it with whole sessions. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *what)
{
	fprintf(stderr, "handshake_cost: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* One handshake (resuming SESSION if not NULL); adds the server's CPU time
 * to *server_us and returns the client's session, with its ticket. */
static SSL_SESSION *handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *session,
			      double *server_us, int *resumed)
{
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	BIO *sbio, *cbio;
	if (s == NULL || c == NULL || !BIO_new_bio_pair(&sbio, 0, &cbio, 0))
		die("out of memory");
	SSL_set_bio(s, sbio, sbio);
	SSL_set_bio(c, cbio, cbio);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	if (session != NULL && !SSL_set_session(c, session))
		die("SSL_set_session failed");
	int server_done = 0, client_done = 0;
	for (int round = 0; !server_done || !client_done; round++) {
		if (round > 10)
			die("the handshake does not finish");
		if (!client_done) {
			int r = SSL_do_handshake(c);
			if (r == 1)
				client_done = 1;
			else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
				die("client handshake failed");
		}
		if (!server_done) {
			double t = cpu_us();
			int r = SSL_do_handshake(s);
			*server_us += cpu_us() - t;
			if (r == 1)
				server_done = 1;
			else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
				die("server handshake failed");
		}
	}
	/* a byte from the server makes the client read the ticket before it */
	char byte;
	if (SSL_write(s, "x", 1) != 1 || SSL_read(c, &byte, 1) != 1)
		die("no data after the handshake");
	*resumed += SSL_session_reused(s);
	SSL_SESSION *next = SSL_get1_session(c);
	/* without a shutdown, SSL_free marks the session not resumable */
	SSL_shutdown(c);
	SSL_shutdown(s);
	SSL_free(s);
	SSL_free(c);
	return next;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: handshake_cost CERT KEY [COUNT]\n");
		return 2;
	}
	int count = argc > 3 ? atoi(argv[3]) : 2000;
	if (count < 1)
		die("COUNT must be a positive number");
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	if (sctx == NULL || cctx == NULL)
		die("SSL_CTX_new failed");
	if (!SSL_CTX_use_certificate_chain_file(sctx, argv[1]) ||
	    !SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM))
		die("cannot load the certificate or the key");
	SSL_CTX_set_num_tickets(sctx, 1);
	SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);

	double full_us = 0, resumed_us = 0;
	int full_resumed = 0, resumed = 0;
	SSL_SESSION *session = handshake(sctx, cctx, NULL, &full_us, &full_resumed); /* warm-up */
	SSL_SESSION_free(session);
	full_us = 0;
	for (int i = 0; i < count; i++) {
		session = handshake(sctx, cctx, NULL, &full_us, &full_resumed);
		SSL_SESSION *again = handshake(sctx, cctx, session, &resumed_us, &resumed);
		SSL_SESSION_free(session);
		SSL_SESSION_free(again);
	}
	if (full_resumed != 0 || resumed != count)
		die("a handshake was not what it should be (full or resumed)");
	printf("openssl=\"%s\" full_us=%.1f resumed_us=%.1f count=%d\n",
	       OpenSSL_version(OPENSSL_VERSION), full_us / count, resumed_us / count, count);
	return 0;
}
