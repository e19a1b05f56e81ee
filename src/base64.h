/* Base64 (RFC 4648 section 4, padded): the encoding of SASL exchanges
 * (RFC 5034) and of SCRAM secrets. Pure; no allocation. */
#ifndef TPOPS_BASE64_H
#define TPOPS_BASE64_H
#include <stddef.h>

/* Characters base64_encode writes for n octets (without the NUL). */
#define BASE64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)
/* Most octets a base64 string of n characters decodes to. */
#define BASE64_DECODED_MAX(n) (((n) / 4) * 3)

/* Writes the padded encoding of in[0..len) and a NUL to out, which holds
 * BASE64_ENCODED_LEN(len) + 1 bytes; returns the encoded length. */
size_t base64_encode(const void *in, size_t len, char *out);

/* Decodes in[0..len) into out (room for outmax octets) and sets *outlen.
 * Strict, as RFC 5034 section 4 asks: only the base64 alphabet, a length
 * that is a multiple of 4, "=" only as one or two final pad characters,
 * and zero bits where padding leaves bits unused (so that every string
 * has one encoding). Returns 0, or -1 for anything else or when out is
 * too small. The empty string decodes to zero octets. */
int base64_decode(const char *in, size_t len, unsigned char *out, size_t outmax, size_t *outlen);

#endif
