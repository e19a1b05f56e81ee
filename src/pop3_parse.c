/* Parsing of one POP3 command line (RFC 1939, RFC 2449) into a command. */
#include "pop3_parse.h"

#include <string.h>

#include "tpops_limits.h"

/* What a command takes after its keyword. */
enum arg_kind {
	ARGS_NONE,     /* STLS CAPA QUIT STAT NOOP RSET */
	ARGS_USER,     /* one text argument */
	ARGS_PASS,     /* the rest of the line, verbatim */
	ARGS_APOP,     /* two text arguments */
	ARGS_AUTH,     /* zero to two text arguments */
	ARGS_OPT_MSG,  /* LIST UIDL: optional message number */
	ARGS_MSG,      /* RETR DELE: one message number */
	ARGS_TOP,      /* message number and line count */
};

struct keyword {
	char name[5];
	enum pop3_cmd cmd;
	enum arg_kind args;
};

static const struct keyword keywords[] = {
	{ "USER", CMD_USER, ARGS_USER },
	{ "PASS", CMD_PASS, ARGS_PASS },
	{ "APOP", CMD_APOP, ARGS_APOP },
	{ "AUTH", CMD_AUTH, ARGS_AUTH },
	{ "STLS", CMD_STLS, ARGS_NONE },
	{ "CAPA", CMD_CAPA, ARGS_NONE },
	{ "QUIT", CMD_QUIT, ARGS_NONE },
	{ "STAT", CMD_STAT, ARGS_NONE },
	{ "LIST", CMD_LIST, ARGS_OPT_MSG },
	{ "RETR", CMD_RETR, ARGS_MSG },
	{ "DELE", CMD_DELE, ARGS_MSG },
	{ "NOOP", CMD_NOOP, ARGS_NONE },
	{ "RSET", CMD_RSET, ARGS_NONE },
	{ "TOP", CMD_TOP, ARGS_TOP },
	{ "UIDL", CMD_UIDL, ARGS_OPT_MSG },
};

#define NKEYWORDS (sizeof(keywords) / sizeof(keywords[0]))

/* ASCII only: toupper() would depend on the locale. */
static char upper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static const struct keyword *find_keyword(const char *s, size_t len)
{
	if (len == 0 || len > 4)
		return NULL;
	for (size_t i = 0; i < NKEYWORDS; i++) {
		const char *name = keywords[i].name;
		if (strlen(name) != len)
			continue;
		size_t j = 0;
		while (j < len && upper(s[j]) == name[j])
			j++;
		if (j == len)
			return &keywords[i];
	}
	return NULL;
}

/* Plain decimal, 1 to 10 digits, at most POP3_MAX_NUMBER. Ten digits are
 * enough for the bound and keep the value within uint64_t without any
 * overflow check; a sign or any other character is refused. */
static bool parse_number(const char *s, size_t len, uint32_t min, uint32_t *out)
{
	if (len == 0 || len > 10)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v < min || v > POP3_MAX_NUMBER)
		return false;
	*out = (uint32_t)v;
	return true;
}

enum pop3_parse_status pop3_parse(const char *line, size_t len, struct pop3_command *out)
{
	memset(out, 0, sizeof(*out));
	out->cmd = CMD_NONE;

	/* First, so that no later rule can see a line cut short by a NUL. */
	if (len > 0 && memchr(line, '\0', len) != NULL)
		return PARSE_NUL;

	const char *p = line;
	const char *end = line + len;
	/* Leading spaces are tolerated like the separators are. */
	while (p < end && *p == ' ')
		p++;
	if (p == end)
		return PARSE_EMPTY;

	const char *kw = p;
	while (p < end && *p != ' ')
		p++;
	const struct keyword *k = find_keyword(kw, (size_t)(p - kw));
	if (k == NULL)
		return PARSE_UNKNOWN;
	out->cmd = k->cmd;

	/* RFC 1939 lets a password hold spaces: it is everything after the
	 * one space that follows the keyword, trailing spaces included. */
	if (k->args == ARGS_PASS) {
		if (p == end || p + 1 == end)
			return PARSE_BAD_ARGS;
		out->arg[0] = p + 1;
		out->arg_len[0] = (size_t)(end - (p + 1));
		out->nargs = 1;
		return PARSE_OK;
	}

	/* Split the rest at runs of spaces. Only two arguments are kept; any
	 * more make the count wrong for every command. */
	unsigned n = 0;
	for (;;) {
		while (p < end && *p == ' ')
			p++;
		if (p == end)
			break;
		const char *a = p;
		while (p < end && *p != ' ')
			p++;
		if (n < 2) {
			out->arg[n] = a;
			out->arg_len[n] = (size_t)(p - a);
		}
		n++;
	}
	if (n > 2) {
		/* Do not hand out a partial argument list. */
		memset(out->arg, 0, sizeof(out->arg));
		memset(out->arg_len, 0, sizeof(out->arg_len));
		out->nargs = 0;
		return PARSE_BAD_ARGS;
	}
	out->nargs = n;

	switch (k->args) {
	case ARGS_NONE:
		return n == 0 ? PARSE_OK : PARSE_BAD_ARGS;
	case ARGS_USER:
		return n == 1 ? PARSE_OK : PARSE_BAD_ARGS;
	case ARGS_APOP:
		return n == 2 ? PARSE_OK : PARSE_BAD_ARGS;
	case ARGS_AUTH:
		/* No mechanism asks the server for its list (RFC 5034). */
		return PARSE_OK;
	case ARGS_OPT_MSG:
		if (n == 0)
			return PARSE_OK;
		if (n != 1)
			return PARSE_BAD_ARGS;
		if (!parse_number(out->arg[0], out->arg_len[0], 1, &out->number[0]))
			return PARSE_BAD_NUMBER;
		out->has_number = true;
		return PARSE_OK;
	case ARGS_MSG:
		if (n != 1)
			return PARSE_BAD_ARGS;
		if (!parse_number(out->arg[0], out->arg_len[0], 1, &out->number[0]))
			return PARSE_BAD_NUMBER;
		return PARSE_OK;
	case ARGS_TOP:
		if (n != 2)
			return PARSE_BAD_ARGS;
		/* TOP n 0 is valid: the header and the empty line only. */
		if (!parse_number(out->arg[0], out->arg_len[0], 1, &out->number[0]) ||
		    !parse_number(out->arg[1], out->arg_len[1], 0, &out->number[1]))
			return PARSE_BAD_NUMBER;
		return PARSE_OK;
	case ARGS_PASS:
		break; /* handled above */
	}
	return PARSE_BAD_ARGS;
}

const char *pop3_cmd_name(enum pop3_cmd cmd)
{
	for (size_t i = 0; i < NKEYWORDS; i++)
		if (keywords[i].cmd == cmd)
			return keywords[i].name;
	return "?";
}
