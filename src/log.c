/* Logging to syslog or stderr: error/warn/info/debug, printf-checked. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static enum config_log log_target = LOG_TO_STDERR;
/* Rewritten by SIGHUP (reload.c) while every thread reads it. */
static atomic_int log_level = LOGLEVEL_INFO;
static const char *log_ident = "tpops";

void log_open(const char *ident, enum config_log target, enum config_log_level level,
	      int facility)
{
	log_ident = ident;
	log_target = target;
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
	if (target == LOG_TO_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void log_set_level(enum config_log_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

static int level_now(void)
{
	return atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool log_debug_enabled(void)
{
	return level_now() >= LOGLEVEL_DEBUG;
}

static void log_write(int priority, const char *label, const char *fmt, va_list ap)
{
	if (log_target == LOG_TO_SYSLOG) {
		vsyslog(priority, fmt, ap);
		return;
	}
	char line[2048];
	vsnprintf(line, sizeof line, fmt, ap);
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	/* one fprintf per line: stdio locks the stream, so lines from
	 * different threads never interleave */
	fprintf(stderr, "%s.%03ld %s: %s%s\n", when, ts.tv_nsec / 1000000, log_ident, label, line);
}

static bool plain_octet(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != '\\' && c != '"';
}

const char *log_field(char *out, size_t outlen, const char *text, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	static const char cut[] = "...";
	size_t o = 0;
	if (outlen == 0)
		return out;
	size_t whole = 0;
	for (size_t i = 0; i < len; i++)
		whole += plain_octet((unsigned char)text[i]) ? 1 : 4;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		bool plain = plain_octet(c);
		size_t need = plain ? 1 : 4;
		/* room for this character, and for the cut mark unless the
		 * whole text fits */
		size_t room = whole <= outlen - 1 ? need : need + sizeof cut - 1;
		if (o + room > outlen - 1) {
			if (o + sizeof cut - 1 <= outlen - 1) {
				memcpy(out + o, cut, sizeof cut - 1);
				o += sizeof cut - 1;
			}
			break;
		}
		if (plain) {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

const char *log_field_str(char *out, size_t outlen, const char *text)
{
	return log_field(out, outlen, text ? text : "", text ? strlen(text) : 0);
}

#define LOG_BODY(prio, label, min_level)                                                           \
	do {                                                                                       \
		if (level_now() < (min_level))                                                       \
			return;                                                                    \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		log_write(prio, label, fmt, ap);                                                   \
		va_end(ap);                                                                        \
	} while (0)

void log_error(const char *fmt, ...)
{
	LOG_BODY(LOG_ERR, "error: ", LOGLEVEL_ERROR);
}

void log_warn(const char *fmt, ...)
{
	LOG_BODY(LOG_WARNING, "warning: ", LOGLEVEL_ERROR);
}

void log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_INFO, "", LOGLEVEL_INFO);
}

void log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_DEBUG, "debug: ", LOGLEVEL_DEBUG);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_write(LOG_CRIT, "fatal: ", fmt, ap);
	va_end(ap);
	exit(1);
}
