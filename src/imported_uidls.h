/* UIDLs that messages brought with them from another POP3 server
 * (tpops-import), so that clients that leave mail on the server do not
 * fetch it all again after the switch.
 *
 * SQL stores keep them in msg.uidl. A Maildir keeps them in its own file,
 * <Maildir>/tpops-uidls, beside (not inside) the caches: deleting
 * tpops-index or tpops-sizes loses nothing. The file is text, appended to
 * by tpops-import and only read by the daemon:
 *     tpops-uidls 1
 *     ? <base name> <uidl>     being imported: the file may not be there yet
 *     + <base name> <uidl>     imported: the file was in place
 * The last line for a base name counts; a message is listed in the order
 * of the first line that names it, before every message without one (they
 * all arrived before the switch). A last line without its newline (an
 * append cut short) is ignored; any other line that does not parse makes
 * the file damaged (the lines before it still count, and the daemon logs
 * it). Names and UIDLs are 1-255 and 1-70 octets of 0x21-0x7E. */
#ifndef TPOPS_IMPORTED_UIDLS_H
#define TPOPS_IMPORTED_UIDLS_H
#include <stdbool.h>
#include <stddef.h>

#include "tpops_limits.h"

#define IMPORTED_UIDLS_FILE  "tpops-uidls"
#define IMPORTED_UIDLS_MAGIC "tpops-uidls 1\n"
/* A file larger than this is not one tpops-import wrote (a million
 * messages take about 120 MB). */
#define IMPORTED_UIDLS_MAX (1024u * 1024 * 1024)

struct imported_uidl {
	const char *base; /* into the text; base_len octets */
	size_t base_len;
	const char *uidl; /* into the text; uidl_len octets */
	size_t uidl_len;
	size_t order; /* of the first line naming base */
	bool done; /* the last line was "+" */
};

struct imported_uidls {
	char *text; /* the file (malloc'd); entries point into it */
	size_t len;
	struct imported_uidl *entries; /* one per base name, in order */
	size_t count;
	size_t *table; /* open addressing on base: index + 1, 0 = empty */
	size_t table_size;
	size_t bad_line; /* 0, or the number of the first line that did not parse */
	size_t parsed_len; /* octets up to the end of the last line that counted */
};

/* Parses a file's contents; takes text (malloc'd) over. Never fails: what
 * parses before a damaged line is kept (bad_line says where it stopped). */
void imported_uidls_parse(struct imported_uidls *u, char *text, size_t len);
/* Loads <Maildir>/tpops-uidls of an open Maildir: DB_OK (an absent file
 * loads as empty), DB_TEMPFAIL for I/O errors (reason in err). */
int imported_uidls_load(int maildir_fd, struct imported_uidls *u, char *err, size_t errlen);
const struct imported_uidl *imported_uidls_find(const struct imported_uidls *u, const char *base,
						size_t base_len);
void imported_uidls_free(struct imported_uidls *u);

/* Whether a string may be stored as an imported UIDL (RFC 1939: 1-70
 * octets 0x21-0x7E) or as a base name here (1-255 such octets). */
bool imported_uidl_valid(const char *s, size_t len);
bool imported_base_valid(const char *s, size_t len);

/* Cuts the file of an open Maildir back to parsed_len octets when it is
 * longer (an append cut short, a damaged line): tpops-import does this
 * before it appends. -1 with errno. */
int imported_uidls_truncate(int maildir_fd, const struct imported_uidls *u);

/* Appends one line ("?" or "+") to the file of an open Maildir, creating
 * it with its first line when absent, and fsyncs it. -1 with errno. */
int imported_uidls_append(int maildir_fd, char mark, const char *base, const char *uidl);

/* The UIDL a message whose own UIDL (`own`) equals an imported UIDL of the
 * same maildrop gets instead: "Z" and the SHA-256 of own in hex, stable as
 * long as that imported message is there. */
void imported_uidl_avoid(const char *own, char out[POP3_MAX_UIDL + 1]);

#endif
