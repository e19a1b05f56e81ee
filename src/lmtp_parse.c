/* LMTP command lines and DATA octets (see lmtp_parse.h). */
#include "lmtp_parse.h"

#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	enum lmtp_verb verb;
} verbs[] = {
	{"LHLO", LMTP_LHLO}, {"MAIL", LMTP_MAIL}, {"RCPT", LMTP_RCPT}, {"DATA", LMTP_DATA},
	{"RSET", LMTP_RSET}, {"NOOP", LMTP_NOOP}, {"QUIT", LMTP_QUIT}, {"VRFY", LMTP_VRFY},
	{"HELO", LMTP_HELO}, {"EHLO", LMTP_HELO},
};

const char *lmtp_verb_name(enum lmtp_verb verb)
{
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (verbs[i].verb == verb)
			return verbs[i].name;
	return "?";
}

/* Printable ASCII but space: what a path may hold (no SMTPUTF8 is offered). */
static bool path_char(char c)
{
	return c > ' ' && c < 0x7f;
}

/* "<path>" at *p (already past "FROM:" or "TO:" and any spaces): copies
 * the path without a source route ("@a,@b:") into out. */
static enum lmtp_parse_status parse_path(const char **p, const char *end, char *out)
{
	const char *s = *p;
	if (s >= end || *s != '<')
		return LMTP_PARSE_SYNTAX;
	s++;
	const char *close = memchr(s, '>', (size_t)(end - s));
	if (close == NULL)
		return LMTP_PARSE_SYNTAX;
	for (const char *c = s; c < close; c++)
		if (!path_char(*c))
			return LMTP_PARSE_PATH;
	/* a source route is to be ignored (RFC 5321 4.1.1.3, 3.3) */
	if (s < close && *s == '@') {
		const char *colon = memchr(s, ':', (size_t)(close - s));
		if (colon == NULL)
			return LMTP_PARSE_PATH;
		s = colon + 1;
	}
	size_t n = (size_t)(close - s);
	if (n > LMTP_MAX_PATH)
		return LMTP_PARSE_PATH;
	/* a mailbox is local@domain; only MAIL may have the null path */
	if (n > 0) {
		const char *at = memchr(s, '@', n);
		if (at == NULL || at == s || at == close - 1)
			return LMTP_PARSE_PATH;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	*p = close + 1;
	return LMTP_PARSE_OK;
}

/* A decimal number of at most 19 digits (anything larger is no size a
 * message here can have). */
static bool parse_number(const char *s, size_t n, uint64_t *v)
{
	if (n == 0 || n > 19)
		return false;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	*v = x;
	return true;
}

/* The parameters after a MAIL or RCPT path: "SP keyword[=value]"... */
static enum lmtp_parse_status parse_params(const char *p, const char *end,
					   struct lmtp_command *cmd)
{
	while (p < end) {
		if (*p != ' ')
			return LMTP_PARSE_SYNTAX;
		while (p < end && *p == ' ')
			p++;
		if (p == end)
			break;
		const char *word = p;
		while (p < end && *p != ' ')
			p++;
		size_t n = (size_t)(p - word);
		const char *eq = memchr(word, '=', n);
		size_t key_len = eq ? (size_t)(eq - word) : n;
		const char *value = eq ? eq + 1 : NULL;
		size_t value_len = eq ? (size_t)(p - value) : 0;
		if (cmd->verb == LMTP_MAIL && key_len == 4 && strncasecmp(word, "SIZE", 4) == 0) {
			if (value == NULL || !parse_number(value, value_len, &cmd->size))
				return LMTP_PARSE_SYNTAX;
		} else if (cmd->verb == LMTP_MAIL && key_len == 4 &&
			   strncasecmp(word, "BODY", 4) == 0) {
			if (value_len == 4 && strncasecmp(value, "7BIT", 4) == 0)
				cmd->body = LMTP_BODY_7BIT;
			else if (value_len == 8 && strncasecmp(value, "8BITMIME", 8) == 0)
				cmd->body = LMTP_BODY_8BITMIME;
			else
				return LMTP_PARSE_PARAMETER;
		} else {
			return LMTP_PARSE_PARAMETER;
		}
	}
	return LMTP_PARSE_OK;
}

/* "FROM:" / "TO:" (any case), spaces allowed after the colon as many
 * clients send them, then the path and the parameters. */
static enum lmtp_parse_status parse_mail_rcpt(const char *p, const char *end, const char *word,
					      struct lmtp_command *cmd)
{
	size_t n = strlen(word);
	if (p >= end || *p != ' ')
		return LMTP_PARSE_SYNTAX;
	p++;
	if ((size_t)(end - p) < n || strncasecmp(p, word, n) != 0)
		return LMTP_PARSE_SYNTAX;
	p += n;
	while (p < end && *p == ' ')
		p++;
	enum lmtp_parse_status st = parse_path(&p, end, cmd->path);
	if (st != LMTP_PARSE_OK)
		return st;
	if (cmd->verb == LMTP_RCPT && cmd->path[0] == '\0')
		return LMTP_PARSE_PATH;
	return parse_params(p, end, cmd);
}

enum lmtp_parse_status lmtp_parse_command(const char *line, size_t len, struct lmtp_command *cmd)
{
	memset(cmd, 0, sizeof *cmd);
	const char *end = line + len;
	if (memchr(line, '\0', len) != NULL)
		return LMTP_PARSE_UNKNOWN;
	/* trailing spaces are noise some clients add */
	while (end > line && end[-1] == ' ')
		end--;
	size_t word = 0;
	while (line + word < end && line[word] != ' ')
		word++;
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (word == 4 && strncasecmp(line, verbs[i].name, 4) == 0)
			cmd->verb = verbs[i].verb;
	if (cmd->verb == LMTP_NONE)
		return LMTP_PARSE_UNKNOWN;
	const char *args = line + word; /* at the space before the arguments, or end */
	switch (cmd->verb) {
	case LMTP_LHLO:
	case LMTP_HELO:
		/* a domain or address literal: one word */
		if (args == end || args + 1 == end || memchr(args + 1, ' ', (size_t)(end - args - 1)))
			return LMTP_PARSE_SYNTAX;
		return LMTP_PARSE_OK;
	case LMTP_MAIL:
		return parse_mail_rcpt(args, end, "FROM:", cmd);
	case LMTP_RCPT:
		return parse_mail_rcpt(args, end, "TO:", cmd);
	case LMTP_VRFY:
		return args == end ? LMTP_PARSE_SYNTAX : LMTP_PARSE_OK;
	case LMTP_NOOP:
		return LMTP_PARSE_OK; /* an argument is allowed and ignored */
	default:
		return args == end ? LMTP_PARSE_OK : LMTP_PARSE_SYNTAX;
	}
}

/* ---- DATA ---- */

enum {
	DATA_LINE_START = 0, /* at the start of a line */
	DATA_DOT,            /* a line started with "." */
	DATA_DOT_CR,         /* a line started with ".\r" */
	DATA_IN_LINE,        /* inside a line */
	DATA_CR,             /* inside a line, after a CR */
};

void lmtp_data_start(struct lmtp_data *d, uint64_t max)
{
	*d = (struct lmtp_data){.state = DATA_LINE_START, .max = max};
}

static void emit(struct lmtp_data *d, struct buf *out, const char *s, size_t n)
{
	if (n == 0)
		return;
	/* what fits is kept, so the kept octets are always the first ones,
	 * however the input was cut */
	uint64_t room = d->size < d->max ? d->max - d->size : 0;
	if (n <= room) {
		buf_append(out, s, n);
	} else {
		buf_append(out, s, (size_t)room);
		d->too_big = true;
	}
	d->size += n;
}

size_t lmtp_data_feed(struct lmtp_data *d, const char *in, size_t len, struct buf *out,
		      bool *done)
{
	*done = false;
	size_t i = 0;
	while (i < len) {
		char c = in[i];
		switch (d->state) {
		case DATA_LINE_START:
			if (c == '.') {
				d->state = DATA_DOT;
				i++;
			} else {
				d->state = DATA_IN_LINE;
			}
			break;
		case DATA_DOT:
			if (c == '\r') {
				d->state = DATA_DOT_CR;
				i++;
			} else if (c == '\n') {
				*done = true;
				return i + 1;
			} else {
				/* dot-stuffed: the first "." goes */
				d->state = DATA_IN_LINE;
			}
			break;
		case DATA_DOT_CR:
			if (c == '\n') {
				*done = true;
				return i + 1;
			}
			/* ".\r" and more: unstuffed, the CR kept */
			emit(d, out, "\r", 1);
			d->state = DATA_IN_LINE;
			break;
		case DATA_IN_LINE: {
			/* the common case: a run of plain octets at once */
			size_t j = i;
			while (j < len && in[j] != '\r' && in[j] != '\n')
				j++;
			emit(d, out, in + i, j - i);
			i = j;
			if (i < len) {
				if (in[i] == '\n') {
					emit(d, out, "\n", 1);
					d->state = DATA_LINE_START;
				} else {
					d->state = DATA_CR;
				}
				i++;
			}
			break;
		}
		case DATA_CR:
			if (c == '\n') {
				emit(d, out, "\n", 1);
				d->state = DATA_LINE_START;
				i++;
			} else if (c == '\r') {
				emit(d, out, "\r", 1); /* the earlier one was bare */
				i++;
			} else {
				emit(d, out, "\r", 1);
				d->state = DATA_IN_LINE;
			}
			break;
		}
	}
	return len;
}
