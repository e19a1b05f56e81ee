/* tpops-admin: asks the running daemon over its control socket
 * (ControlSocket): who is logged in, end a user's sessions, the
 * statistics, a reload. The daemon serves only root and its own user. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tool_common.h"

/* kick waits for the sessions to end, reload for the new configuration */
#define ANSWER_TIMEOUT_SECONDS 60

static const char usage_text[] =
	"usage: tpops-admin [-c FILE] [-s SOCKET] COMMAND\n"
	"  who          the logged-in sessions: login, peer, state, since, messages,\n"
	"               messages retrieved, octets sent, TLS, I/O thread\n"
	"  kick LOGIN   end LOGIN's sessions (their locks are released, nothing is deleted)\n"
	"  stats        the daemon's counters as a table\n"
	"  reload       re-read the configuration, as SIGHUP does, and say what happened\n"
	"  -c FILE      configuration file, for ControlSocket (default " DEFAULT_CONFIG_PATH ")\n"
	"  -s SOCKET    the control socket itself (then no configuration is read)\n";

static void usage(FILE *out, int status)
{
	fputs(usage_text, out);
	exit(status);
}

/* ControlSocket alone, from a file that fails to parse as a whole: a
 * broken file is when `reload` has most to say, so it must still reach the
 * daemon. The key's lines go through the one configuration parser. */
static int control_socket_only(struct config *cfg, const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -1;
	config_defaults(cfg);
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	while (rc == 0 && getline(&line, &cap, f) > 0) {
		const char *p = line + strspn(line, " \t");
		size_t key = strlen("ControlSocket");
		if (strncasecmp(p, "ControlSocket", key) == 0 && strchr(" \t:=", p[key]) != NULL)
			rc = config_parse(cfg, path, p, strlen(p), NULL, 0);
	}
	free(line);
	fclose(f);
	return rc;
}

static const char *socket_from_config(const char *config_path)
{
	static struct config cfg;
	char err[1024];
	if (config_load(&cfg, config_path, err, sizeof err) != 0) {
		config_free(&cfg);
		if (control_socket_only(&cfg, config_path) != 0) {
			fprintf(stderr, "tpops-admin: %s (or name the socket with -s)\n", err);
			exit(EX_CONFIG);
		}
		fprintf(stderr, "tpops-admin: note: %s; ControlSocket is read from it all the same\n",
			err);
	}
	if (cfg.control_socket == NULL) {
		fprintf(stderr, "tpops-admin: %s: ControlSocket is none: the daemon has no control "
				"socket\n",
			config_path);
		exit(EX_CONFIG);
	}
	return cfg.control_socket;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sun.sun_path) {
		fprintf(stderr, "tpops-admin: %s: the socket path is too long\n", path);
		exit(EX_USAGE);
	}
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "tpops-admin: socket: %s\n", strerror(errno));
		exit(EX_OSERR);
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		int e = errno;
		if (e == EACCES || e == EPERM) {
			fprintf(stderr, "tpops-admin: %s: %s (only root and the daemon's user may use "
					"it)\n",
				path, strerror(e));
			exit(EX_NOPERM);
		}
		fprintf(stderr, "tpops-admin: cannot reach the daemon at %s: %s (is tpops running? "
				"see ControlSocket in tpops.conf)\n",
			path, strerror(e));
		exit(EX_UNAVAILABLE);
	}
	struct timeval tv = {ANSWER_TIMEOUT_SECONDS, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH, *socket_path = NULL;
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "+c:s:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'h':
			usage(stdout, 0);
			break;
		case 'V':
			tool_version("tpops-admin");
			return 0;
		default:
			usage(stderr, EX_USAGE);
		}
	}
	int n = argc - optind;
	const char *cmd = n > 0 ? argv[optind] : "";
	char request[512];
	if (n == 1 && (strcmp(cmd, "who") == 0 || strcmp(cmd, "stats") == 0 ||
		       strcmp(cmd, "reload") == 0)) {
		snprintf(request, sizeof request, "%s\n", cmd);
	} else if (n == 2 && strcmp(cmd, "kick") == 0) {
		const char *login = argv[optind + 1];
		if (*login == '\0' || strlen(login) > 256 || strpbrk(login, " \t\r\n") != NULL) {
			fprintf(stderr, "tpops-admin: kick: \"%s\" is not a login\n", login);
			return EX_USAGE;
		}
		snprintf(request, sizeof request, "kick %s\n", login);
	} else {
		usage(stderr, EX_USAGE);
	}
	if (socket_path == NULL)
		socket_path = socket_from_config(config_path);

	int fd = connect_to(socket_path);
	size_t len = strlen(request);
	/* a refusal comes before the request is read: it is still there to
	 * read when sending fails */
	int send_errno = send(fd, request, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : errno;
	/* the answer: "+OK text" or "-ERR text", then the body, then EOF */
	FILE *in = fdopen(fd, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t got = in ? getline(&line, &cap, in) : -1;
	if (got <= 0) {
		if (send_errno != 0)
			fprintf(stderr, "tpops-admin: sending to %s: %s\n", socket_path,
				strerror(send_errno));
		else
			fprintf(stderr, "tpops-admin: no answer from %s%s\n", socket_path,
				errno == EAGAIN ? ": timed out" : "");
		return EX_UNAVAILABLE;
	}
	if (line[got - 1] == '\n')
		line[--got] = '\0';
	bool ok = strncmp(line, "+OK", 3) == 0;
	const char *text = line + (ok ? 3 : strncmp(line, "-ERR", 4) == 0 ? 4 : 0);
	while (*text == ' ')
		text++;
	if (ok)
		printf("%s\n", text);
	else
		fprintf(stderr, "tpops-admin: %s\n", text);
	char buf[8192];
	size_t r;
	while ((r = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, r, ok ? stdout : stderr);
	bool denied = !ok && strstr(text, "permission denied") != NULL;
	fclose(in);
	free(line);
	if (fflush(stdout) != 0)
		return EX_IOERR;
	return ok ? 0 : denied ? EX_NOPERM : 1;
}
