/* The POP3 client's parser (see pop3_client.h). */
#include "pop3_client.h"

#include <string.h>

size_t pop3c_line_length(const char *data, size_t len)
{
	const char *nl = memchr(data, '\n', len);
	return nl ? (size_t)(nl - data) + 1 : 0;
}

size_t pop3c_line_content(const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

enum pop3c_status pop3c_status(const char *line, size_t len, const char **text_r)
{
	size_t word;
	enum pop3c_status s;
	if (len >= 3 && memcmp(line, "+OK", 3) == 0) {
		word = 3;
		s = POP3C_OK;
	} else if (len >= 4 && memcmp(line, "-ERR", 4) == 0) {
		word = 4;
		s = POP3C_ERR;
	} else {
		return POP3C_BAD;
	}
	if (len > word && line[word] != ' ')
		return POP3C_BAD;
	*text_r = line + (len > word ? word + 1 : word);
	return s;
}

/* A decimal number 1..max at *p; advances *p. */
static bool number(const char **p, const char *end, uint64_t max, uint64_t *v)
{
	uint64_t n = 0;
	const char *s = *p;
	while (s < end && *s >= '0' && *s <= '9') {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > max)
			return false;
		s++;
	}
	if (s == *p)
		return false;
	*p = s;
	*v = n;
	return true;
}

static const char *spaces(const char *p, const char *end)
{
	while (p < end && *p == ' ')
		p++;
	return p;
}

bool pop3c_uidl_line(const char *line, size_t len, unsigned *number_r,
		     char uidl_r[POP3_MAX_UIDL + 1])
{
	const char *p = line, *end = line + len;
	uint64_t n;
	if (!number(&p, end, POP3_MAX_NUMBER, &n) || n == 0 || p == end || *p != ' ')
		return false;
	p = spaces(p, end);
	const char *u = p;
	while (p < end && (unsigned char)*p >= 0x21 && (unsigned char)*p <= 0x7e)
		p++;
	size_t ulen = (size_t)(p - u);
	if (ulen == 0 || ulen > POP3_MAX_UIDL || spaces(p, end) != end)
		return false;
	memcpy(uidl_r, u, ulen);
	uidl_r[ulen] = '\0';
	*number_r = (unsigned)n;
	return true;
}

bool pop3c_list_line(const char *line, size_t len, unsigned *number_r, uint64_t *size_r)
{
	const char *p = line, *end = line + len;
	uint64_t n, size;
	if (!number(&p, end, POP3_MAX_NUMBER, &n) || n == 0 || p == end || *p != ' ')
		return false;
	p = spaces(p, end);
	if (!number(&p, end, UINT64_MAX / 10 - 10, &size) || (p < end && *p != ' '))
		return false;
	*number_r = (unsigned)n;
	*size_r = size;
	return true;
}

static void keep(struct pop3c_multiline *ml, const char *data, size_t len)
{
	if (ml->too_large || ml->out.len + len > ml->max) {
		ml->too_large = true; /* read on to the end, keep nothing more */
		return;
	}
	buf_append(&ml->out, data, len);
}

bool pop3c_multiline_line(struct pop3c_multiline *ml, const char *line, size_t len)
{
	size_t n = pop3c_line_content(line, len);
	if (!ml->in_line) {
		if (n == 1 && line[0] == '.') {
			ml->done = true;
			return true;
		}
		if (n > 0 && line[0] == '.') {
			line++;
			n--;
		}
	}
	ml->in_line = false;
	keep(ml, line, n);
	keep(ml, "\r\n", 2);
	return false;
}

void pop3c_multiline_part(struct pop3c_multiline *ml, const char *part, size_t len)
{
	if (len == 0)
		return;
	if (!ml->in_line && part[0] == '.') {
		part++;
		len--;
	}
	ml->in_line = true;
	keep(ml, part, len);
}
