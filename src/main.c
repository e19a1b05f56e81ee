/* tpops, the POP3 daemon: the command line, the configuration and the
 * logging, then one of three modes: check the configuration (-t), serve
 * one session (--inetd), or run as a daemon (daemon.c). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "config.h"
#include "daemon.h"
#include "db.h"
#include "inetd.h"
#include "ioloop.h"
#include "log.h"
#include "privsep.h"
#include "startup_check.h"
#include "tls.h"
#include "tpops_limits.h"

struct options {
	const char *config_path;
	bool foreground, check_only, verbose, inetd;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tpops [-c FILE] [-f] [-t] [-v] [--inetd] [--help] [--version]\n"
		"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG_PATH ")\n"
		"  -f, --foreground    stay in the foreground, log to stderr\n"
		"  -t, --check-config  check the configuration and the database, then exit\n"
		"  -v, --verbose       log every POP3 command (passwords never)\n"
		"      --inetd         serve one session on standard input and output\n");
}

/* -1 to go on; otherwise the exit status (--help, --version, a misuse). */
static int parse_arguments(int argc, char **argv, struct options *o)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"foreground", no_argument, NULL, 'f'},
		{"check-config", no_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"inetd", no_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:ftvh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			o->config_path = optarg;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 't':
			o->check_only = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'i':
			o->inetd = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("tpops %s\n", TPOPS_VERSION);
			return 0;
		default:
			usage(stderr);
			return 64;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 64;
	}
	return -1;
}

/* -f and -t talk to the terminal; in inetd mode stdout is the client. */
static void open_log(const struct options *o, const struct config *cfg)
{
	enum config_log target = cfg->log;
	if (o->check_only || o->foreground)
		target = LOG_TO_STDERR;
	if (o->inetd && target == LOG_TO_STDERR && !o->foreground)
		target = LOG_TO_SYSLOG;
	log_open("tpops", target, o->verbose ? LOGLEVEL_DEBUG : cfg->log_level,
		 cfg->syslog_facility);
}

/* The configuration, checked against this build and with its TLS key
 * loaded (as root: the key may be root's); NULL after saying why. */
static struct config *load_config(const struct options *o)
{
	char err[1024];
	struct config *cfg = config_new(o->config_path, err, sizeof err);
	if (cfg == NULL) {
		fprintf(stderr, "tpops: %s\n", err);
		return NULL;
	}
	if (o->foreground)
		cfg->foreground = true;
	open_log(o, cfg);
	if (startup_check_config(cfg, err, sizeof err) != 0 ||
	    tls_load(cfg, err, sizeof err) != 0) {
		log_error("%s", err);
		config_release(cfg);
		return NULL;
	}
	return cfg;
}

/* -t: the configuration and the database, as User (the tools' rule: as
 * root, act as User so that no file becomes root's). */
static int check_only(struct config *cfg)
{
	char err[1024];
	if (privsep_drop(cfg->user, cfg->group, err, sizeof err) != 0)
		log_fatal("%s", err);
	int rc = 0;
	if (startup_check_database(cfg, true) != 0) {
		fprintf(stderr, "tpops: configuration file %s test failed\n", cfg->path);
		rc = 1;
	} else {
		printf("tpops: the configuration file %s syntax is ok\n"
		       "tpops: database (%s) reached%s\n",
		       cfg->path, db_engine(cfg)->name,
		       tls_available() ? "; TLS certificate loaded" : "");
	}
	tls_unload();
	config_release(cfg);
	return rc;
}

static int serve_inetd(struct config *cfg)
{
	char err[1024];
	/* one session: a reload (`pkill -HUP tpops`) must not kill it */
	signal(SIGHUP, SIG_IGN);
	if (privsep_drop(cfg->user, cfg->group, err, sizeof err) != 0)
		log_fatal("%s", err);
	int rc = inetd_serve(cfg);
	config_release(cfg);
	return rc;
}

/* Every session holds a socket (and a Maildir session its directory):
 * use all the descriptors the hard limit allows, as MaxConnections may. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct options o = {.config_path = DEFAULT_CONFIG_PATH};
	int rc = parse_arguments(argc, argv, &o);
	if (rc >= 0)
		return rc;
	struct config *cfg = load_config(&o);
	if (cfg == NULL)
		return 78;
	if (o.check_only)
		return check_only(cfg);
	ioloop_global_init();
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (o.inetd)
		return serve_inetd(cfg);
	return daemon_run(cfg, o.config_path, o.verbose);
}
