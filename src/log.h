/* Logging to syslog or stderr: error/warn/info/debug, printf-checked. */
#ifndef TPOPS_LOG_H
#define TPOPS_LOG_H
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Before log_open, messages go to stderr at info level. facility is a
 * LOG_* value of syslog.h (SyslogFacility). */
void log_open(const char *ident, enum config_log target, enum config_log_level level,
	      int facility);
void log_set_level(enum config_log_level level);
bool log_debug_enabled(void);

#define LOG_PRINTF __attribute__((format(printf, 1, 2)))
LOG_PRINTF void log_error(const char *fmt, ...);
LOG_PRINTF void log_warn(const char *fmt, ...);
LOG_PRINTF void log_info(const char *fmt, ...);
LOG_PRINTF void log_debug(const char *fmt, ...);
/* Text a client chose (a login, a mechanism, a command line), made fit
 * for one field of a log line: every octet outside the printable ASCII
 * range, the space, '\\' and '"' become \xHH, so that the text cannot
 * end its field, start another (" from=203.0.113.9") or a new line. At
 * most outlen - 1 characters; longer text is cut, never inside an escape,
 * and ends with "...". Returns out. */
#define LOG_FIELD_SIZE 256
const char *log_field(char *out, size_t outlen, const char *text, size_t len);
const char *log_field_str(char *out, size_t outlen, const char *text);

/* Logs at error level and exits with status 1 (start-up failures only). */
LOG_PRINTF __attribute__((noreturn)) void log_fatal(const char *fmt, ...);

#endif
