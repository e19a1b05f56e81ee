/* TLS session tickets under keys of our own, so that a ticket outlives the
 * SSL_CTX that issued it: OpenSSL's own keys are per context, and a SIGHUP
 * (a new context) or another I/O thread's context would turn every ticket
 * into a full handshake. The keys are random, in memory only, and rotate:
 * a new key every lifetime seconds, made by the first handshake that needs
 * it; the previous key still opens tickets (and asks for a fresh one). */
#include "tls_ticket.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct ticket_key {
	unsigned char name[16]; /* in the clear in the ticket: which key */
	unsigned char aes[32];  /* AES-256-CBC */
	unsigned char hmac[32]; /* HMAC-SHA256 */
	time_t made;
	int valid;
};

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key current, previous;
/* Fetched once (tls_ticket_attach): EVP_aes_256_cbc() in each Init would
 * look the implementation up again for every ticket. */
static EVP_CIPHER *ticket_cipher;
static int key_lifetime = 3600;

/* With the mutex held: a current key no older than the lifetime. */
static int keys_fresh(time_t now)
{
	if (current.valid && now - current.made < key_lifetime && now >= current.made)
		return 0;
	struct ticket_key next = {.made = now, .valid = 1};
	if (RAND_bytes(next.name, sizeof next.name) != 1 ||
	    RAND_priv_bytes(next.aes, sizeof next.aes) != 1 ||
	    RAND_priv_bytes(next.hmac, sizeof next.hmac) != 1) {
		OPENSSL_cleanse(&next, sizeof next);
		return -1;
	}
	/* a key past two lifetimes is no longer "previous": gone */
	if (current.valid && now - current.made < 2 * (time_t)key_lifetime)
		previous = current;
	else
		OPENSSL_cleanse(&previous, sizeof previous);
	current = next;
	OPENSSL_cleanse(&next, sizeof next);
	return 0;
}

static int mac_init(EVP_MAC_CTX *hctx, const unsigned char *key)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	return EVP_MAC_init(hctx, key, 32, params);
}

/* OpenSSL's ticket key callback: enc 1 seals a new ticket under the
 * current key; enc 0 finds the key a ticket names. Returns -1 on error,
 * 0 for "no such key" (a full handshake), 1 to accept, 2 to accept and
 * issue a new ticket under the current key. A resumed session always gets
 * a new ticket: TLS 1.3 clients use a ticket once (RFC 8446 C.4), and
 * without a new one their next connection would be a full handshake. */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
			 EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct ticket_key k;
	int result;
	time_t now = time(NULL);
	if (ticket_cipher == NULL) /* no tickets: full handshakes (logged at start) */
		return 0;
	pthread_mutex_lock(&mutex);
	if (keys_fresh(now) != 0) {
		pthread_mutex_unlock(&mutex);
		log_error("TLS tickets: no random bytes for a new key");
		return -1;
	}
	if (enc) {
		k = current;
		result = 1;
	} else if (memcmp(key_name, current.name, sizeof current.name) == 0) {
		k = current;
		result = 2;
	} else if (previous.valid && memcmp(key_name, previous.name, sizeof previous.name) == 0) {
		k = previous;
		result = 2;
	} else {
		pthread_mutex_unlock(&mutex);
		return 0;
	}
	pthread_mutex_unlock(&mutex);
	if (enc) {
		memcpy(key_name, k.name, sizeof k.name);
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(ticket_cipher)) != 1 ||
		    EVP_EncryptInit_ex(cctx, ticket_cipher, NULL, k.aes, iv) != 1)
			result = -1;
	} else if (EVP_DecryptInit_ex(cctx, ticket_cipher, NULL, k.aes, iv) != 1) {
		result = -1;
	}
	if (result > 0 && mac_init(hctx, k.hmac) != 1)
		result = -1;
	OPENSSL_cleanse(&k, sizeof k);
	return result;
}

void tls_ticket_attach(SSL_CTX *ctx, int lifetime)
{
	pthread_mutex_lock(&mutex);
	if (ticket_cipher == NULL) {
		ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
		if (ticket_cipher == NULL)
			log_error("TLS tickets: this OpenSSL has no AES-256-CBC: no session tickets");
	}
	if (lifetime != key_lifetime) {
		key_lifetime = lifetime;
		/* the rule changes for keys already made: judge them again */
		keys_fresh(time(NULL));
	}
	pthread_mutex_unlock(&mutex);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
	/* A ticket is worth nothing after two lifetimes (its key is gone). */
	SSL_CTX_set_timeout(ctx, 2 * (long)lifetime);
	/* Tickets only: a server-side cache would be one per context (lost on
	 * SIGHUP) behind one lock for all threads. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* One ticket per handshake (OpenSSL sends two): a POP3 client makes
	 * one connection at a time. */
	SSL_CTX_set_num_tickets(ctx, 1);
	static const unsigned char sid_ctx[] = "tpops";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
}

void tls_ticket_forget(void)
{
	pthread_mutex_lock(&mutex);
	OPENSSL_cleanse(&current, sizeof current);
	OPENSSL_cleanse(&previous, sizeof previous);
	EVP_CIPHER_free(ticket_cipher);
	ticket_cipher = NULL;
	pthread_mutex_unlock(&mutex);
}
