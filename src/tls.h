/* The OpenSSL server context: loaded from TLS_Cert/TLS_Key before the
 * privilege drop, replaced on SIGHUP while running sessions keep theirs. */
#ifndef TPOPS_TLS_H
#define TPOPS_TLS_H
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* The same, quietly, at any time after the handshake: whether the kernel
 * encrypts what is written, so that SSL_sendfile can send a file. */
bool tls_kernel_sends(const SSL *ssl);

enum tls_sendfile_result {
	TLS_SENDFILE_DONE,   /* all of it is sent */
	TLS_SENDFILE_MORE,   /* `most` octets went: call again (the socket may take more) */
	TLS_SENDFILE_WAIT,   /* the socket is full: call again once it is writable */
	TLS_SENDFILE_FAILED, /* nothing more can go; why in err */
	TLS_SENDFILE_REFUSED, /* the kernel cannot send this file so (its file
				 system, say): write its octets instead; why in err */
};
/* Sends up to `most` of the *left octets of file fd from *offset (both
 * advanced by what went) through ssl, whose records the kernel encrypts
 * (tls_kernel_sends): SSL_sendfile, straight from the page cache. A file
 * that ends before *left octets is a failure ("the file ended ...");
 * *peer_gone_r tells a failure of the connection (reset, broken pipe)
 * from one of the file. Never blocks on the socket (it is non-blocking);
 * may wait for the disk where the file is not in the page cache. */
enum tls_sendfile_result tls_sendfile(SSL *ssl, int fd, uint64_t *offset, uint64_t *left,
				      size_t most, bool *peer_gone_r, char *err, size_t errlen);
void tls_unload(void);

#endif
