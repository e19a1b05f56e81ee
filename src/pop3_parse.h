/* One POP3 command line -> one command. Pure: no I/O, no allocation. */
#ifndef TPOPS_POP3_PARSE_H
#define TPOPS_POP3_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pop3_cmd {
	CMD_NONE = 0,
	CMD_USER,
	CMD_PASS,
	CMD_APOP,
	CMD_AUTH,
	CMD_STLS,
	CMD_CAPA,
	CMD_QUIT,
	CMD_STAT,
	CMD_LIST,
	CMD_RETR,
	CMD_DELE,
	CMD_NOOP,
	CMD_RSET,
	CMD_TOP,
	CMD_UIDL,
};

enum pop3_parse_status {
	PARSE_OK = 0,
	PARSE_EMPTY,       /* empty line (or only spaces) */
	PARSE_NUL,         /* the line holds a NUL byte */
	PARSE_UNKNOWN,     /* not a POP3 command keyword */
	PARSE_BAD_ARGS,    /* known command, wrong number or form of arguments */
	PARSE_BAD_NUMBER,  /* a message number / line count that is not a valid number */
};

struct pop3_command {
	enum pop3_cmd cmd;
	/* Text arguments point into the parsed line (not NUL-terminated):
	 * USER name; PASS rest of line; APOP name + digest; AUTH mechanism +
	 * optional initial response. */
	const char *arg[2];
	size_t arg_len[2];
	unsigned nargs;
	/* Numeric arguments: LIST/UIDL [msg], RETR/DELE msg, TOP msg lines.
	 * has_number tells whether LIST/UIDL had one. */
	uint32_t number[2];
	bool has_number;
};

/* Parses one line without its CRLF. Keywords are case-insensitive;
 * arguments are separated by spaces. Message numbers are 1..POP3_MAX_NUMBER
 * in plain decimal digits; a TOP line count is 0..POP3_MAX_NUMBER. */
enum pop3_parse_status pop3_parse(const char *line, size_t len, struct pop3_command *out);

/* The keyword of a command, upper case ("RETR"), for logs. */
const char *pop3_cmd_name(enum pop3_cmd cmd);

#endif
