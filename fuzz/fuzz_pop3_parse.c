/* libFuzzer target: pop3_parse invariants on arbitrary command lines. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tpops_limits.h"
#include "pop3_parse.h"

#include "fuzz_check.h"

static bool is_numeric(enum pop3_cmd cmd)
{
	return cmd == CMD_LIST || cmd == CMD_UIDL || cmd == CMD_RETR || cmd == CMD_DELE ||
	       cmd == CMD_TOP;
}

static void check_result(const char *line, size_t len, enum pop3_parse_status st,
			 const struct pop3_command *c)
{
	bool has_nul = len > 0 && memchr(line, '\0', len) != NULL;

	CHECK(st <= PARSE_BAD_NUMBER);
	CHECK((st == PARSE_NUL) == has_nul);
	CHECK((c->cmd == CMD_NONE) ==
	      (st == PARSE_EMPTY || st == PARSE_NUL || st == PARSE_UNKNOWN));
	CHECK(c->cmd <= CMD_UIDL);
	CHECK(c->nargs <= 2);
	const char *name = pop3_cmd_name(c->cmd);
	CHECK(name != NULL && name[0] != '\0');

	/* Arguments lie inside the line; only a password may hold spaces. */
	for (unsigned i = 0; i < c->nargs; i++) {
		CHECK(c->arg[i] >= line && c->arg[i] + c->arg_len[i] <= line + len);
		CHECK(c->arg_len[i] > 0);
		if (c->cmd != CMD_PASS)
			CHECK(memchr(c->arg[i], ' ', c->arg_len[i]) == NULL);
	}
	if (st != PARSE_OK)
		return;

	/* The keyword starts the line after any spaces. */
	const char *p = line;
	while (*p == ' ')
		p++;
	CHECK(strncasecmp(p, name, strlen(name)) == 0);

	switch (c->cmd) {
	case CMD_USER:
		CHECK(c->nargs == 1);
		break;
	case CMD_PASS:
		CHECK(c->nargs == 1 && c->arg[0] + c->arg_len[0] == line + len);
		break;
	case CMD_APOP:
		CHECK(c->nargs == 2);
		break;
	case CMD_LIST:
	case CMD_UIDL:
		CHECK(c->has_number == (c->nargs == 1));
		if (c->has_number)
			CHECK(c->number[0] >= 1 && c->number[0] <= POP3_MAX_NUMBER);
		break;
	case CMD_RETR:
	case CMD_DELE:
		CHECK(!c->has_number);
		CHECK(c->number[0] >= 1 && c->number[0] <= POP3_MAX_NUMBER);
		break;
	case CMD_TOP:
		CHECK(c->number[0] >= 1 && c->number[0] <= POP3_MAX_NUMBER);
		CHECK(c->number[1] <= POP3_MAX_NUMBER);
		break;
	case CMD_AUTH:
		break;
	default:
		CHECK(c->nargs == 0);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Keep lines near the protocol size so the mutations stay useful. */
	if (size > 4 * POP3_MAX_LINE)
		return 0;
	/* A private copy with no terminator, so ASan catches any read past
	 * len; plus one spare for the trailing-space variant below. */
	char *line = malloc(size + 1);
	CHECK(line != NULL);
	if (size > 0)
		memcpy(line, data, size);

	struct pop3_command c;
	enum pop3_parse_status st = pop3_parse(line, size, &c);
	check_result(line, size, st, &c);

	/* Flipping the case of every ASCII letter in the line changes no
	 * status and no command (the arguments differ only in case). */
	{
		char *flip = malloc(size + 1);
		CHECK(flip != NULL);
		for (size_t i = 0; i < size; i++) {
			char ch = line[i];
			if (ch >= 'a' && ch <= 'z')
				ch = (char)(ch - 'a' + 'A');
			else if (ch >= 'A' && ch <= 'Z')
				ch = (char)(ch - 'A' + 'a');
			flip[i] = ch;
		}
		struct pop3_command f;
		enum pop3_parse_status fst = pop3_parse(flip, size, &f);
		CHECK(fst == st && f.cmd == c.cmd && f.nargs == c.nargs);
		CHECK(f.number[0] == c.number[0] && f.number[1] == c.number[1]);
		free(flip);
	}

	/* A trailing space changes nothing except for PASS. */
	if (c.cmd != CMD_PASS && st != PARSE_NUL) {
		line[size] = ' ';
		struct pop3_command t;
		enum pop3_parse_status tst = pop3_parse(line, size + 1, &t);
		CHECK(tst == st && t.cmd == c.cmd && t.nargs == c.nargs);
		for (unsigned i = 0; i < t.nargs; i++)
			CHECK(t.arg[i] == c.arg[i] && t.arg_len[i] == c.arg_len[i]);
	}

	/* Numbers survive printing and parsing again. */
	if (st == PARSE_OK && is_numeric(c.cmd)) {
		char buf[64];
		int n;
		if (c.cmd == CMD_TOP)
			n = snprintf(buf, sizeof(buf), "%s %u %u", pop3_cmd_name(c.cmd),
				     (unsigned)c.number[0], (unsigned)c.number[1]);
		else if (c.cmd == CMD_RETR || c.cmd == CMD_DELE || c.has_number)
			n = snprintf(buf, sizeof(buf), "%s %u", pop3_cmd_name(c.cmd),
				     (unsigned)c.number[0]);
		else
			n = snprintf(buf, sizeof(buf), "%s", pop3_cmd_name(c.cmd));
		CHECK(n > 0 && (size_t)n < sizeof(buf));
		struct pop3_command r;
		CHECK(pop3_parse(buf, (size_t)n, &r) == PARSE_OK);
		CHECK(r.cmd == c.cmd && r.has_number == c.has_number);
		CHECK(r.number[0] == c.number[0] && r.number[1] == c.number[1]);
	}

	free(line);
	return 0;
}
