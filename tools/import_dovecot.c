/* tpops-import dovecot: the users of a Dovecot passwd-file and their
 * Maildirs, each message with the UIDL Dovecot's POP3 server showed.
 *
 * Dovecot (2.x, Maildir) lists a mailbox's messages in the order of their
 * IMAP UIDs in dovecot-uidlist (those with a POP3 order number, the "O"
 * field, first), and each one's UIDL is the "P" field of its line when it
 * has one (a migrated or saved UIDL; empty means the base file name), else
 * pop3_uidl_format expanded with its UID, the mailbox's UIDVALIDITY, its
 * file name and GUID. A file that dovecot-uidlist does not name yet has
 * never been listed by Dovecot, so no client knows a UIDL for it: it comes
 * over with tpops's own UIDL. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "buf.h"
#include "import.h"
#include "imported_uidls.h"
#include "maildir.h"
#include "password.h"
#include "xalloc.h"

#define DOVECOT_DEFAULT_UIDL_FORMAT "%08Xu%08Xv"

/* ---- pop3_uidl_format (Dovecot 2.3's var_expand, the parts that make
 * sense for a UIDL) ---- */

static void append_lower(struct buf *b, const char *s, bool upper, bool lower)
{
	for (; *s; s++) {
		char c = *s;
		if (upper && c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (lower && c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		buf_append_char(b, c);
	}
}

bool dovecot_uidl_expand(const char *fmt, const struct dovecot_uidl_vars *v, char *out,
			 size_t outlen, char *err, size_t errlen)
{
	struct buf b = BUF_INIT;
	buf_append(&b, "", 0);
	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			buf_append_char(&b, *p);
			continue;
		}
		p++;
		if (*p == '%') {
			buf_append_char(&b, '%');
			continue;
		}
		/* [-][0]<width>[.[0][-]<width>] then modifiers, then the variable */
		int sign = 1;
		long width = 0, offset = 0;
		bool zero = false;
		if (*p == '-') {
			sign = -1;
			p++;
		}
		if (*p == '0') {
			zero = true;
			p++;
		}
		while (*p >= '0' && *p <= '9')
			width = width * 10 + (*p++ - '0');
		if (*p == '.') {
			offset = sign * width;
			sign = 1;
			width = 0;
			zero = false;
			p++;
			if (*p == '0') {
				zero = true;
				p++;
			}
			if (*p == '-') {
				sign = -1;
				p++;
			}
			while (*p >= '0' && *p <= '9')
				width = width * 10 + (*p++ - '0');
			width *= sign;
		}
		char mods[10];
		size_t nmods = 0;
		while (nmods < sizeof mods && *p && strchr("LUXRMTEHND", *p) != NULL)
			mods[nmods++] = *p++;
		const char *name = NULL;
		size_t name_len = 0;
		char key = 0;
		if (*p == '{') {
			const char *end = strchr(p, '}');
			if (end == NULL) {
				snprintf(err, errlen, "an unterminated %%{ in %s", fmt);
				goto fail;
			}
			name = p + 1;
			name_len = (size_t)(end - name);
			p = end;
		} else if (*p == '\0') {
			snprintf(err, errlen, "%s ends in the middle of a variable", fmt);
			goto fail;
		} else {
			key = *p;
		}
#define IS(k, longname)                                                                            \
	(key == (k) ||                                                                             \
	 (name != NULL && name_len == strlen(longname) && memcmp(name, longname, name_len) == 0))
		char num[32];
		const char *val;
		if (IS('u', "uid")) {
			snprintf(num, sizeof num, "%lu", v->uid);
			val = num;
		} else if (IS('v', "uidvalidity")) {
			snprintf(num, sizeof num, "%lu", v->uidvalidity);
			val = num;
		} else if (IS('m', "md5")) {
			if (v->md5 == NULL) {
				snprintf(
					err, errlen,
					"%%m (the header's MD5) is not something Dovecot gives for "
					"a "
					"Maildir: its POP3 server refused such a pop3_uidl_format");
				goto fail;
			}
			val = v->md5;
		} else if (IS('f', "filename")) {
			val = v->filename;
		} else if (IS('g', "guid")) {
			val = v->guid;
		} else {
			snprintf(err, errlen, "%s: %%%.*s is not one of %%u %%v %%m %%f %%g", fmt,
				 name ? (int)name_len + 2 : 1, name ? name - 1 : p);
			goto fail;
		}
#undef IS
		/* the modifiers, in order */
		char *cur = xstrdup(val);
		for (size_t i = 0; i < nmods; i++) {
			struct buf m = BUF_INIT;
			buf_append(&m, "", 0);
			switch (mods[i]) {
			case 'L':
			case 'U':
				append_lower(&m, cur, mods[i] == 'U', mods[i] == 'L');
				break;
			case 'X': {
				unsigned long long n = strtoull(cur, NULL, 10);
				buf_printf(&m, "%llx", n);
				break;
			}
			case 'R':
				for (size_t k = strlen(cur); k > 0; k--)
					buf_append_char(&m, cur[k - 1]);
				break;
			case 'M': {
				unsigned char d[EVP_MAX_MD_SIZE];
				unsigned int dn = 0;
				EVP_Digest(cur, strlen(cur), d, &dn, EVP_md5(), NULL);
				for (unsigned k = 0; k < dn; k++)
					buf_printf(&m, "%02x", d[k]);
				break;
			}
			case 'T': {
				size_t n = strlen(cur);
				while (n > 0 && (cur[n - 1] == ' ' || cur[n - 1] == '\t' ||
						 cur[n - 1] == '\n' || cur[n - 1] == '\r'))
					n--;
				buf_append(&m, cur, n);
				break;
			}
			default:
				snprintf(err, errlen, "%s: the %c modifier is not supported here",
					 fmt, mods[i]);
				buf_free(&m);
				free(cur);
				goto fail;
			}
			free(cur);
			cur = buf_steal(&m);
		}
		const char *s = cur;
		size_t slen = strlen(s);
		if (offset < 0) {
			if (slen > (size_t)-offset)
				s += slen - (size_t)-offset;
		} else {
			while (*s && offset > 0) {
				s++;
				offset--;
			}
		}
		slen = strlen(s);
		if (width == 0) {
			buf_append(&b, s, slen);
		} else if (!zero) {
			if (width < 0)
				width = (long)slen + width;
			buf_append(&b, s,
				   width > 0 && (size_t)width < slen ? (size_t)width
								     : (width > 0 ? slen : 0));
		} else {
			for (long k = (long)slen; k < width; k++)
				buf_append_char(&b, '0');
			buf_append(&b, s, slen);
		}
		free(cur);
	}
	if (b.len >= outlen) {
		snprintf(err, errlen, "the UIDL \"%s\" is longer than %zu octets", b.data,
			 outlen - 1);
		goto fail;
	}
	memcpy(out, b.data, b.len + 1);
	buf_free(&b);
	return true;
fail:
	buf_free(&b);
	return false;
}

/* ---- dovecot-uidlist ---- */

struct uidlist_rec {
	unsigned long uid;
	unsigned long order; /* "O": 0 = none */
	char *base;
	char *pop3_uidl; /* "P": NULL = none, "" = the base name */
	char *guid; /* "G" */
};

struct uidlist {
	unsigned version;
	unsigned long uidvalidity;
	struct uidlist_rec *recs;
	size_t count;
};

static void uidlist_free(struct uidlist *u)
{
	for (size_t i = 0; i < u->count; i++) {
		free(u->recs[i].base);
		free(u->recs[i].pop3_uidl);
		free(u->recs[i].guid);
	}
	free(u->recs);
}

static bool parse_ulong(const char *s, size_t len, unsigned long *v)
{
	if (len == 0 || len > 19)
		return false;
	unsigned long n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (unsigned long)(s[i] - '0');
	}
	*v = n;
	return true;
}

/* Versions 3 (Dovecot 1.1 and later) and 1 (1.0): the header, then one line
 * per message: "UID [KEYvalue ...] :FILENAME" (3) or "UID FILENAME" (1). */
static int uidlist_parse(char *text, size_t len, struct uidlist *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	char *save = NULL;
	size_t line_no = 0, cap = 0;
	(void)len;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		line_no++;
		size_t n = strlen(line);
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (line_no == 1) {
			char *sp = strchr(line, ' ');
			unsigned long ver;
			if (sp == NULL || !parse_ulong(line, (size_t)(sp - line), &ver) ||
			    (ver != 1 && ver != 3)) {
				snprintf(err, errlen, "dovecot-uidlist: unknown header \"%.60s\"",
					 line);
				return -1;
			}
			u->version = (unsigned)ver;
			if (ver == 1) {
				/* "1 UIDVALIDITY NEXTUID" */
				if (sscanf(sp + 1, "%lu", &u->uidvalidity) != 1) {
					snprintf(err, errlen, "dovecot-uidlist: bad header");
					return -1;
				}
				continue;
			}
			for (char *f = sp + 1; *f;) {
				size_t flen = strcspn(f, " ");
				if (f[0] == 'V' && !parse_ulong(f + 1, flen - 1, &u->uidvalidity)) {
					snprintf(err, errlen, "dovecot-uidlist: bad UIDVALIDITY");
					return -1;
				}
				f += flen;
				while (*f == ' ')
					f++;
			}
			continue;
		}
		if (n == 0)
			continue;
		struct uidlist_rec r = {0};
		size_t ulen = strspn(line, "0123456789");
		if (!parse_ulong(line, ulen, &r.uid) || line[ulen] != ' ') {
			snprintf(err, errlen, "dovecot-uidlist: line %zu is not a message",
				 line_no);
			return -1;
		}
		char *p = line + ulen + 1;
		if (u->version == 3) {
			/* extension fields until " :" */
			while (*p && *p != ':') {
				size_t flen = strcspn(p, " ");
				char k = p[0];
				char *val = xstrndup(p + 1, flen - 1);
				unsigned long o;
				if (k == 'P') {
					free(r.pop3_uidl);
					r.pop3_uidl = val;
				} else if (k == 'G') {
					free(r.guid);
					r.guid = val;
				} else {
					if (k == 'O' && parse_ulong(val, strlen(val), &o))
						r.order = o;
					free(val);
				}
				p += flen;
				while (*p == ' ')
					p++;
			}
			if (*p != ':') {
				snprintf(err, errlen, "dovecot-uidlist: line %zu has no file name",
					 line_no);
				free(r.pop3_uidl);
				free(r.guid);
				return -1;
			}
			p++;
		}
		r.base = xstrndup(p, maildir_base_length(p));
		if (u->count == cap) {
			cap = cap ? 2 * cap : 64;
			u->recs = xrealloc(u->recs, cap * sizeof *u->recs);
		}
		u->recs[u->count++] = r;
	}
	if (line_no == 0) {
		snprintf(err, errlen, "dovecot-uidlist is empty");
		return -1;
	}
	return 0;
}

static int read_text(int dirfd, const char *name, char **text_r, size_t *len_r)
{
	struct import_msg m = {.file = (char *)name};
	struct import_reader r = {.maildir_fd = dirfd};
	char err[256];
	return import_read_file(&r, &m, text_r, len_r, err, sizeof err);
}

/* ---- the files of a Maildir, by base name ---- */

struct file_entry {
	char *base;
	char *file; /* "cur/NAME" */
	bool used;
};

struct files {
	struct file_entry *e;
	size_t count, cap;
};

static void collect_file(const char *subdir, const char *name, void *ctx)
{
	struct files *f = ctx;
	if (f->count == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 64;
		f->e = xrealloc(f->e, f->cap * sizeof *f->e);
	}
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/%s", subdir, name);
	f->e[f->count++] = (struct file_entry){
		.base = xstrndup(name, maildir_base_length(name)),
		.file = buf_steal(&path),
	};
}

static int compare_file_base(const void *pa, const void *pb)
{
	const struct file_entry *a = pa, *b = pb;
	return strcmp(a->base, b->base);
}

static struct file_entry *files_find(struct files *f, const char *base)
{
	struct file_entry key = {.base = (char *)base};
	return bsearch(&key, f->e, f->count, sizeof *f->e, compare_file_base);
}

static void files_free(struct files *f)
{
	for (size_t i = 0; i < f->count; i++) {
		free(f->e[i].base);
		free(f->e[i].file);
	}
	free(f->e);
}

static int compare_recs(const void *pa, const void *pb)
{
	const struct uidlist_rec *a = pa, *b = pb;
	unsigned long oa = a->order ? a->order : (unsigned long)-1;
	unsigned long ob = b->order ? b->order : (unsigned long)-1;
	if (oa != ob)
		return oa < ob ? -1 : 1;
	return (a->uid > b->uid) - (a->uid < b->uid);
}

static uint64_t file_size(int fd, const struct file_entry *f)
{
	uint64_t w;
	if (maildir_size_field(f->base, strlen(f->base), 'W', &w))
		return w;
	struct stat st;
	return fstatat(fd, f->file, &st, AT_SYMLINK_NOFOLLOW) == 0 ? (uint64_t)st.st_size : 0;
}

/* The messages of one Dovecot Maildir in the order Dovecot's POP3 server
 * listed them, with their UIDLs. */
static int dovecot_list(int fd, const char *path, const char *format, struct import_list *l,
			char *err, size_t errlen)
{
	struct files files = {0};
	char lerr[256];
	if (import_list_maildir(fd, collect_file, &files, lerr, sizeof lerr) != 0) {
		snprintf(err, errlen, "Maildir %s: %s", path, lerr);
		files_free(&files);
		return -1;
	}
	if (files.count > 1)
		qsort(files.e, files.count, sizeof *files.e, compare_file_base);
	char *text = NULL;
	size_t len = 0;
	struct uidlist ul = {0};
	bool have_uidlist = read_text(fd, "dovecot-uidlist", &text, &len) == 0;
	if (!have_uidlist && errno != ENOENT) {
		snprintf(err, errlen, "Maildir %s: dovecot-uidlist: %s", path, strerror(errno));
		files_free(&files);
		return -1;
	}
	if (have_uidlist && uidlist_parse(text, len, &ul, lerr, sizeof lerr) != 0) {
		snprintf(err, errlen, "Maildir %s: %s", path, lerr);
		free(text);
		uidlist_free(&ul);
		files_free(&files);
		return -1;
	}
	free(text);
	if (ul.count > 1)
		qsort(ul.recs, ul.count, sizeof *ul.recs, compare_recs);
	int rc = 0;
	for (size_t i = 0; i < ul.count && rc == 0; i++) {
		struct uidlist_rec *r = &ul.recs[i];
		struct file_entry *f = files_find(&files, r->base);
		if (f == NULL || f->used) /* expunged since Dovecot last wrote the list */
			continue;
		f->used = true;
		struct import_msg *m = import_list_add(l);
		m->file = xstrdup(f->file);
		m->base = xstrdup(f->base);
		m->size = file_size(fd, f);
		if (r->pop3_uidl != NULL) {
			snprintf(m->uidl, sizeof m->uidl, "%s",
				 r->pop3_uidl[0] ? r->pop3_uidl : r->base);
		} else {
			struct dovecot_uidl_vars v = {
				.uid = r->uid,
				.uidvalidity = ul.uidvalidity,
				.md5 = NULL,
				.filename = r->base,
				.guid = r->guid ? r->guid : r->base,
			};
			if (!dovecot_uidl_expand(format, &v, m->uidl, sizeof m->uidl, lerr,
						 sizeof lerr)) {
				snprintf(err, errlen, "Maildir %s: UID %lu: %s", path, r->uid,
					 lerr);
				rc = -1;
				break;
			}
		}
		if (!imported_uidl_valid(m->uidl, strlen(m->uidl))) {
			snprintf(err, errlen,
				 "Maildir %s: UID %lu: \"%s\" is not a valid POP3 UIDL (1-70 "
				 "printable octets)",
				 path, r->uid, m->uidl);
			rc = -1;
		}
	}
	/* never listed by Dovecot: tpops's own UIDL, after the others */
	for (size_t i = 0; i < files.count && rc == 0; i++) {
		struct file_entry *f = &files.e[i];
		if (f->used)
			continue;
		struct import_msg *m = import_list_add(l);
		m->file = xstrdup(f->file);
		m->base = xstrdup(f->base);
		m->size = file_size(fd, f);
		maildir_uidl(f->base, strlen(f->base), m->uidl);
		l->unseen++;
	}
	uidlist_free(&ul);
	files_free(&files);
	return rc;
}

/* ---- the passwd-file ---- */

/* %u %n %d %h and a leading ~/ in a template. */
static char *expand_path(const char *tmpl, const char *user, const char *home)
{
	struct buf b = BUF_INIT;
	const char *at = strchr(user, '@');
	if (tmpl[0] == '~' && (tmpl[1] == '/' || tmpl[1] == '\0')) {
		buf_append_str(&b, home);
		tmpl++;
	}
	for (const char *p = tmpl; *p; p++) {
		if (*p != '%' || p[1] == '\0') {
			buf_append_char(&b, *p);
			continue;
		}
		switch (*++p) {
		case 'u':
			buf_append_str(&b, user);
			break;
		case 'n':
			buf_append(&b, user, at ? (size_t)(at - user) : strlen(user));
			break;
		case 'd':
			buf_append_str(&b, at ? at + 1 : "");
			break;
		case 'h':
			buf_append_str(&b, home);
			break;
		default:
			buf_append_char(&b, *p);
		}
	}
	buf_append(&b, "", 0);
	return buf_steal(&b);
}

/* Dovecot's scheme names that are one tpops verifies under another name:
 * the hash itself is kept as it is. */
static char *tpops_password(const char *stored, char *why, size_t whylen)
{
	static const struct {
		const char *dovecot, *tpops;
	} aliases[] = {
		{"{CLEARTEXT}", "{PLAIN}"},
		{"{MD5-CRYPT}", "{CRYPT}"},
		{"{SHA256-CRYPT}", "{CRYPT}"},
		{"{DES-CRYPT}", "{CRYPT}"},
	};
	struct buf b = BUF_INIT;
	buf_append_str(&b, stored);
	for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
		size_t n = strlen(aliases[i].dovecot);
		if (strncasecmp(stored, aliases[i].dovecot, n) == 0) {
			buf_truncate(&b, 0);
			buf_printf(&b, "%s%s", aliases[i].tpops, stored + n);
			break;
		}
	}
	char *out = buf_steal(&b);
	if (out[0] == '\0') {
		snprintf(why, whylen, "has no password");
		free(out);
		return NULL;
	}
	/* a password that cannot match costs a verification, and tells
	 * whether tpops knows the scheme and the hash is whole */
	if (password_verify(out, "\001", 1) < 0) {
		size_t n = out[0] == '{' ? strcspn(out, "}") + 1 : 0;
		snprintf(why, whylen,
			 "password scheme %.*s is not one tpops verifies (or the hash "
			 "is damaged)",
			 n ? (int)n : 9, n ? out : "(unknown)");
		free(out);
		return NULL;
	}
	return out;
}

static const char usage_text[] =
	"usage: tpops-import dovecot [OPTIONS] PASSWD-FILE\n"
	"  --maildir TEMPLATE     the Maildirs (%u %n %d %h, ~/; default "
	"~/Maildir)\n"
	"  --uidl-format FMT      Dovecot's pop3_uidl_format (default %08Xu%08Xv)\n"
	"  --domain DOMAIN        the address of a login without @ is "
	"LOGIN@DOMAIN\n"
	"  --copy                 copy the messages (into --dest) instead of "
	"adopting\n"
	"  --dest TEMPLATE        --copy: the new Maildirs below MaildirRoot "
	"(default %u)\n"
	"  --into-sql             import into the SQL store\n"
	"  --dry-run              write nothing; say what would be done\n";

int import_dovecot(int argc, char **argv, struct db *db, const struct config *cfg,
		   struct import_options *opt, struct import_stats *st)
{
	if (argc != 1) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	const char *passwd_path = argv[0];
	FILE *f = fopen(passwd_path, "r");
	if (f == NULL) {
		fprintf(stderr, "tpops-import: %s: %s\n", passwd_path, strerror(errno));
		return EX_NOINPUT;
	}
	const char *format = opt->uidl_format ? opt->uidl_format : DOVECOT_DEFAULT_UIDL_FORMAT;
	struct dovecot_uidl_vars probe = {1, 1, NULL, "x", "x"};
	char tmp[POP3_MAX_UIDL + 1], err[1024];
	if (!dovecot_uidl_expand(format, &probe, tmp, sizeof tmp, err, sizeof err)) {
		fprintf(stderr, "tpops-import: --uidl-format: %s\n", err);
		fclose(f);
		return EX_USAGE;
	}
	char *line = NULL;
	size_t cap = 0, line_no = 0;
	ssize_t n;
	int rc = EX_OK;
	while ((n = getline(&line, &cap, f)) > 0) {
		line_no++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		/* user:password:uid:gid:gecos:home:shell:extra */
		char *fields[8] = {0};
		char *p = line;
		for (int i = 0; i < 8 && p; i++) {
			fields[i] = p;
			if (i < 7) {
				char *c = strchr(p, ':');
				if (c)
					*c++ = '\0';
				p = c;
			}
		}
		const char *login = fields[0];
		const char *home = fields[5] ? fields[5] : "";
		if (login == NULL || login[0] == '\0') {
			fprintf(stderr, "tpops-import: %s:%zu: no user name; line skipped\n",
				passwd_path, line_no);
			st->users_skipped++;
			continue;
		}
		/* userdb_mail=maildir:PATH (or mail=) names the Maildir itself */
		char *mail_loc = NULL, *user_format = NULL;
		for (char *e = fields[7]; e && *e;) {
			size_t elen = strcspn(e, " ");
			const char *v = NULL;
			/* a per-user pop3_uidl_format is what Dovecot used for them */
			if (strncmp(e, "userdb_pop3_uidl_format=", 24) == 0 ||
			    strncmp(e, "pop3_uidl_format=", 17) == 0) {
				/* Dovecot expands extra fields at login: the
				 * file says %%u for the %u of the format */
				const char *fv = strchr(e, '=') + 1;
				struct buf fb = BUF_INIT;
				buf_append(&fb, "", 0);
				for (const char *q = fv; q < e + elen; q++) {
					buf_append_char(&fb, *q);
					if (q[0] == '%' && q + 1 < e + elen && q[1] == '%')
						q++;
				}
				free(user_format);
				user_format = buf_steal(&fb);
			}
			if (strncmp(e, "userdb_mail=", 12) == 0)
				v = e + 12;
			else if (strncmp(e, "mail=", 5) == 0)
				v = e + 5;
			if (v != NULL && strncmp(v, "maildir:", 8) == 0) {
				size_t vlen = (size_t)(e + elen - v) - 8;
				char *loc = xstrndup(v + 8, vlen);
				loc[strcspn(loc, ":")] = '\0'; /* :INDEX= and the like */
				free(mail_loc);
				mail_loc = loc;
			}
			e += elen;
			while (*e == ' ')
				e++;
		}
		char *src = expand_path(mail_loc ? mail_loc : opt->maildir_template, login, home);
		free(mail_loc);
		char why[256];
		char *passwd = tpops_password(fields[1] ? fields[1] : "", why, sizeof why);
		if (passwd == NULL) {
			import_progress_end();
			fprintf(stderr, "tpops-import: %s: %s; user not imported\n", login, why);
			st->users_skipped++;
			free(src);
			free(user_format);
			rc = EX_DATAERR;
			continue;
		}
		struct import_list l = {0};
		int fd = import_open_source(src, err, sizeof err);
		if (fd < 0 || dovecot_list(fd, src, user_format ? user_format : format, &l, err,
					   sizeof err) != 0) {
			import_progress_end();
			fprintf(stderr, "tpops-import: %s: %s; user not imported\n", login, err);
			st->users_failed++;
			rc = EX_DATAERR;
			if (fd >= 0)
				close(fd);
			import_list_free(&l);
			free(passwd);
			free(src);
			free(user_format);
			continue;
		}
		struct buf addr = BUF_INIT;
		if (strchr(login, '@') == NULL && opt->domain != NULL)
			buf_printf(&addr, "%s@%s", login, opt->domain);
		else
			buf_append_str(&addr, login);
		char *maildir;
		if (opt->into_sql)
			maildir = xstrdup("");
		else if (opt->copy) {
			char *d = expand_path(opt->dest_template, login, home);
			maildir = import_maildir_for_config(cfg, d);
			free(d);
		} else
			maildir = import_maildir_for_config(cfg, src);
		uint64_t bytes = 0;
		for (size_t i = 0; i < l.count; i++)
			bytes += l.msgs[i].size;
		struct user u = {0};
		if (import_user(db, cfg, opt, login, passwd, addr.data, maildir, &u) != 0) {
			st->users_failed++;
			rc = EX_TEMPFAIL;
		} else {
			st->msgs_total += l.count;
			st->bytes_total += bytes;
			import_progress_user(login, l.count, bytes);
			if (l.unseen > 0) {
				import_progress_end();
				fprintf(stderr,
					"tpops-import: %s: %zu messages Dovecot had not listed yet "
					"get "
					"tpops's own UIDLs\n",
					login, l.unseen);
			}
			struct import_reader reader = {.read = import_read_file, .maildir_fd = fd};
			struct import_stats before = *st;
			if (import_messages(db, cfg, opt, &u, fd, &l, &reader, st) != 0) {
				st->users_failed++;
				rc = EX_TEMPFAIL;
			} else {
				st->users++;
			}
			if (opt->dry_run)
				import_dry_run_user(&u, &before, st);
		}
		user_clear(&u);
		free(maildir);
		buf_free(&addr);
		close(fd);
		import_list_free(&l);
		free(passwd);
		free(src);
		free(user_format);
	}
	free(line);
	fclose(f);
	return rc;
}
