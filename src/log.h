/* Logging to syslog or stderr: error/warn/info/debug, printf-checked. */
#ifndef TPOPS_LOG_H
#define TPOPS_LOG_H
#include <stdbool.h>

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
/* Logs at error level and exits with status 1 (start-up failures only). */
LOG_PRINTF __attribute__((noreturn)) void log_fatal(const char *fmt, ...);

#endif
