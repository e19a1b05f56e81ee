/* Kernel TLS: whether this kernel can take over TLS record encryption
 * (the "tls" upper layer protocol of TCP), found out at run time. */
#ifndef TPOPS_KTLS_H
#define TPOPS_KTLS_H
#include <stdbool.h>
#include <stddef.h>

/* Whether a list of TCP upper layer protocols as in
 * /proc/sys/net/ipv4/tcp_available_ulp ("mptcp tls") names "tls". */
bool ktls_ulp_listed(const char *list);
/* Asks the kernel: a loopback TCP connection tries TCP_ULP "tls" (which
 * also loads the module when run as root), else the list above is read.
 * why gets a short reason when the answer is no. */
bool ktls_kernel_offers(char *why, size_t whylen);

#endif
