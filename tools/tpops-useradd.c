/* tpops-useradd: register a POP3 user (the seed's command). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "maildir.h"
#include "password.h"
#include "tool_common.h"
#include "xalloc.h"

/* With Mailbox: Maildir, the user's Maildir and its tmp/ new/ cur/ are
 * made now (as User, as tool_open switched to), so that the new user can
 * log in before the first delivery; one that exists is only checked. The
 * directories above it are made too, as a delivery would. 0, or the exit
 * status after saying what failed. */
static int make_maildir(const struct config *cfg, const char *maildir)
{
	char err[512];
	int dir_fd, subdirs[3];
	int status = maildir_open_dir(cfg->maildir_root, maildir, true, &dir_fd, err, sizeof err);
	if (status == DB_OK) {
		status = maildir_open_subdirs(dir_fd, true, subdirs, err, sizeof err);
		for (int i = 0; status == DB_OK && i < 3; i++)
			close(subdirs[i]);
		close(dir_fd);
	}
	if (status == DB_OK)
		return 0;
	fprintf(stderr, "tpops-useradd: %s\n", err);
	return status == DB_PERMFAIL ? EX_DATAERR : EX_CANTCREAT;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tpops-useradd [-c FILE] [--plain | --scheme SCHEME] [--quota BYTES]\n"
		"                     LOGIN PASSWORD MAIL [MAILDIR]\n"
		"  PASSWORD - reads the password from standard input.\n"
		"  --scheme: SHA512-CRYPT (default), BLF-CRYPT, YESCRYPT, ARGON2ID, SCRAM-SHA-256,\n"
		"            PLAIN.\n"
		"  --plain stores the password as plain text ({PLAIN}), which APOP needs.\n");
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH, *scheme = PASSWORD_DEFAULT_SCHEME;
	long long quota = 0;
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'}, {"plain", no_argument, NULL, 'p'},
		{"scheme", required_argument, NULL, 's'}, {"quota", required_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:ps:q:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'p':
			scheme = "PLAIN";
			break;
		case 's':
			scheme = optarg;
			break;
		case 'q': {
			char *end;
			quota = strtoll(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || quota < 0) {
				fprintf(stderr, "tpops-useradd: --quota: \"%s\" is not a byte count\n",
					optarg);
				return EX_USAGE;
			}
			break;
		}
		case 'h':
			usage(stdout);
			return EX_OK;
		case 'V':
			tool_version("tpops-useradd");
			return EX_OK;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (argc - optind < 3 || argc - optind > 4) {
		usage(stderr);
		return EX_USAGE;
	}
	if (!password_scheme_known(scheme)) {
		fprintf(stderr, "tpops-useradd: unknown password scheme \"%s\"\n", scheme);
		return EX_USAGE;
	}
	const char *login = argv[optind], *mail = argv[optind + 2];
	if (login[0] == '\0' || mail[0] == '\0') {
		fprintf(stderr, "tpops-useradd: LOGIN and MAIL must not be empty\n");
		return EX_USAGE;
	}
	/* USER takes the login as one word: a login with a space or a
	 * control character in it could never log in. */
	for (const unsigned char *p = (const unsigned char *)login; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f) {
			fprintf(stderr, "tpops-useradd: LOGIN must not contain spaces or control "
					"characters\n");
			return EX_USAGE;
		}
	}
	struct config cfg;
	struct db *db = tool_open("tpops-useradd", config_path, &cfg);
	char *password = tool_password_arg("tpops-useradd", argv[optind + 1]);
	char err[256];
	char *stored = password_hash(scheme, password, err, sizeof err);
	free_secret(password, strlen(password));
	if (stored == NULL) {
		fprintf(stderr, "tpops-useradd: %s\n", err);
		tool_close(db, &cfg);
		return EX_SOFTWARE;
	}
	struct user u = {
		.login = (char *)login,
		.passwd = stored,
		.mail = (char *)mail,
		.maildir = argc - optind == 4 ? argv[optind + 3] : "",
		.quota = quota,
	};
	int status = db->ops->user_add(db, &u);
	free_secret(stored, strlen(stored));
	if (status == DB_CONFLICT) {
		fprintf(stderr, "tpops-useradd: a user with login \"%s\" or address \"%s\" already exists\n",
			login, mail);
	} else if (status != DB_OK) {
		fprintf(stderr, "tpops-useradd: %s\n", db_error(db));
	} else if (cfg.mailbox == MAILBOX_MAILDIR && u.maildir[0] != '\0') {
		int rc = make_maildir(&cfg, u.maildir);
		if (rc != 0) {
			/* a user who could not log in is not left behind */
			if (db->ops->user_delete(db, login) == DB_OK)
				fprintf(stderr, "tpops-useradd: %s not added\n", login);
			else
				fprintf(stderr, "tpops-useradd: %s was added but cannot log in until "
						"its Maildir can be made: %s\n", login, db_error(db));
			tool_close(db, &cfg);
			return rc;
		}
	}
	if (status == DB_OK)
		printf("tpops-useradd: added %s <%s>\n", login, mail);
	tool_close(db, &cfg);
	return tool_exit_status(status);
}
