/* The login comparison rule: ASCII case-insensitive, exact otherwise. */
#include "auth_login.h"

#include <string.h>

#include "xalloc.h"

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

char *auth_login_canonical(const char *login, size_t len)
{
	char *out = xstrndup(login, len);
	for (char *p = out; *p != '\0'; p++)
		*p = ascii_lower(*p);
	return out;
}

bool auth_login_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return false;
	for (; *a != '\0' && *b != '\0'; a++, b++)
		if (ascii_lower(*a) != ascii_lower(*b))
			return false;
	return *a == *b;
}
