/* What every maildrop backend shares: the registry and message helpers. */
#include <string.h>

#include "maildrop.h"

const struct maildrop_ops *maildrop_backend(const struct config *cfg)
{
	switch (cfg->mailbox) {
	case MAILBOX_SQL:
		return &maildrop_sql_ops;
	case MAILBOX_MAILDIR:
		return &maildrop_maildir_ops;
	}
	return NULL;
}

size_t message_header_length(const char *msg, size_t len)
{
	size_t pos = 0;
	while (pos < len) {
		/* pos is at a line start: an empty line ends the header */
		if (msg[pos] == '\n')
			return pos + 1;
		if (msg[pos] == '\r' && pos + 1 < len && msg[pos + 1] == '\n')
			return pos + 2;
		const char *nl = memchr(msg + pos, '\n', len - pos);
		if (nl == NULL)
			break;
		pos = (size_t)(nl - msg) + 1;
	}
	return len;
}
