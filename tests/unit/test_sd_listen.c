/* Unit tests of systemd socket activation (src/sd_listen.c) and of the
 * readiness notification (src/sdnotify.c), both without libsystemd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "sd_listen.h"
#include "sdnotify.h"

/* Descriptors far above anything the test runner holds. */
#define FIRST 200

/* A listening TCP socket on 127.0.0.1 (or ::1), an ephemeral port, moved
 * to descriptor `at`. Returns the port. */
static int listener_at(int family, int at)
{
	int fd = socket(family, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_storage ss = {0};
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *in;
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		len = sizeof *in6;
	}
	if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
		close(fd);
		return -1; /* no IPv6 here */
	}
	assert_int_equal(listen(fd, 8), 0);
	len = sizeof ss;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	assert_int_equal(dup2(fd, at), at);
	close(fd);
	return family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
				 : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int from(const char *pid, const char *fds, const char *names, pid_t self,
		struct sd_listen_socket **out, char *err, size_t errlen)
{
	err[0] = '\0';
	return sd_listen_fds_from(pid, fds, names, self, FIRST, out, err, errlen);
}

static void test_not_activated(void **state)
{
	struct sd_listen_socket *s = (void *)1;
	char err[256];
	assert_int_equal(from(NULL, NULL, NULL, 42, &s, err, sizeof err), 0);
	assert_null(s);
	/* for another process: not ours, not an error */
	assert_int_equal(from("41", "2", "a:b", 42, &s, err, sizeof err), 0);
	assert_null(s);
	assert_int_equal(from("42", "0", NULL, 42, &s, err, sizeof err), 0);
	assert_null(s);
}

static void test_malformed(void **state)
{
	struct sd_listen_socket *s;
	char err[256];
	static const char *const bad_pid[] = {"", "x", "-42", "+42", " 42", "42 ", "042",
					      "99999999999999999999"};
	for (size_t i = 0; i < sizeof bad_pid / sizeof bad_pid[0]; i++) {
		assert_int_equal(from(bad_pid[i], "1", NULL, 42, &s, err, sizeof err), -1);
		assert_non_null(strstr(err, "LISTEN_PID"));
	}
	assert_int_equal(from(NULL, "1", NULL, 42, &s, err, sizeof err), -1);
	static const char *const bad_fds[] = {"", "one", "-1", "1x", "01", "4294967299"};
	for (size_t i = 0; i < sizeof bad_fds / sizeof bad_fds[0]; i++) {
		assert_int_equal(from("42", bad_fds[i], NULL, 42, &s, err, sizeof err), -1);
		assert_non_null(strstr(err, "LISTEN_FDS"));
	}
	assert_int_equal(from("42", NULL, NULL, 42, &s, err, sizeof err), -1);
	assert_int_equal(from("42", "65", NULL, 42, &s, err, sizeof err), -1);
	assert_null(s);
}

static void test_closed_fd(void **state)
{
	struct sd_listen_socket *s;
	char err[256];
	close(FIRST);
	assert_int_equal(from("42", "1", NULL, 42, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "fd 200"));
	assert_null(s);
	/* an open descriptor that is not a socket */
	int fd = open("/dev/null", O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(dup2(fd, FIRST), FIRST);
	close(fd);
	assert_int_equal(from("42", "1", NULL, 42, &s, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a socket"));
	close(FIRST);
}

static void test_two_sockets_named(void **state)
{
	int p4 = listener_at(AF_INET, FIRST);
	int p6 = listener_at(AF_INET6, FIRST + 1);
	if (p6 < 0)
		p6 = listener_at(AF_INET, FIRST + 1);
	struct sd_listen_socket *s;
	char err[256];
	assert_int_equal(from("42", "2", "pop3:pop3s", 42, &s, err, sizeof err), 2);
	assert_non_null(s);
	assert_int_equal(s[0].fd, FIRST);
	assert_int_equal(s[1].fd, FIRST + 1);
	assert_string_equal(s[0].name, "pop3");
	assert_string_equal(s[1].name, "pop3s");
	assert_int_equal(s[0].family, AF_INET);
	assert_int_equal(s[0].port, p4);
	assert_int_equal(s[1].port, p6);
	assert_true(s[0].stream && s[0].listening);
	assert_true(s[1].stream && s[1].listening);
	/* close-on-exec is set */
	assert_true(fcntl(FIRST, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(FIRST + 1, F_GETFD) & FD_CLOEXEC);
	/* pop3s by name, whatever the port */
	assert_false(sd_listen_is_tls(&s[0], p4));
	assert_true(sd_listen_is_tls(&s[1], 0));
	free(s);

	/* names that do not match the count are ignored */
	assert_int_equal(from("42", "2", "pop3", 42, &s, err, sizeof err), 2);
	assert_string_equal(s[0].name, "");
	assert_string_equal(s[1].name, "");
	/* unnamed: by port */
	assert_true(sd_listen_is_tls(&s[0], p4));
	assert_false(sd_listen_is_tls(&s[1], p4));
	assert_false(sd_listen_is_tls(&s[0], 0));
	assert_false(sd_listen_is_tls(&s[0], -1));
	struct sd_listen_socket on995 = {.port = 995};
	assert_true(sd_listen_is_tls(&on995, -1));
	assert_false(sd_listen_is_tls(&on995, 0));
	assert_false(sd_listen_is_tls(&on995, 996));
	on995.port = 110;
	assert_false(sd_listen_is_tls(&on995, -1));
	free(s);
	assert_int_equal(from("42", "2", "tpops.socket:tpops.socket", 42, &s, err, sizeof err), 2);
	assert_string_equal(s[1].name, "tpops.socket");
	assert_true(sd_listen_is_tls(&s[1], p6));
	free(s);
	/* empty names and an overlong one */
	char longname[400];
	memset(longname, 'n', sizeof longname);
	longname[0] = ':';
	longname[sizeof longname - 1] = '\0';
	assert_int_equal(from("42", "2", longname, 42, &s, err, sizeof err), 2);
	assert_string_equal(s[0].name, "");
	assert_int_equal(strlen(s[1].name), sizeof s[1].name - 1);
	free(s);
	close(FIRST);
	close(FIRST + 1);
}

/* The real entry point reads and removes the variables. */
static void test_environment(void **state)
{
	struct sd_listen_socket *s;
	char err[256], pid[32];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "1", 1);
	setenv("LISTEN_FDNAMES", "pop3", 1);
	assert_int_equal(sd_listen_fds(true, &s, err, sizeof err), 0);
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));
	/* ours, but fd 3 is whatever the runner has there: only check that
	 * the variables are gone whatever the outcome */
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "x", 1);
	assert_int_equal(sd_listen_fds(true, &s, err, sizeof err), -1);
	assert_null(getenv("LISTEN_PID"));
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "x", 1);
	assert_int_equal(sd_listen_fds(false, &s, err, sizeof err), -1);
	assert_non_null(getenv("LISTEN_PID"));
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	assert_int_equal(sd_listen_fds(true, &s, err, sizeof err), 0);
}

/* ---- sdnotify ------------------------------------------------------- */

/* A datagram socket standing in for systemd's notification socket. */
static int notify_socket(const char *name, int abstract)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(name);
	memcpy(sa.sun_path, name, n);
	if (abstract)
		sa.sun_path[0] = '\0';
	else
		unlink(name);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + !abstract)),
			 0);
	return fd;
}

static void expect_message(int fd, const char *want_prefix)
{
	char buf[1024];
	ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
	assert_true(n > 0);
	buf[n] = '\0';
	if (strncmp(buf, want_prefix, strlen(want_prefix)) != 0)
		print_error("got \"%s\", expected \"%s...\"\n", buf, want_prefix);
	assert_memory_equal(buf, want_prefix, strlen(want_prefix));
}

static void test_notify_path(void **state)
{
	char path[64];
	snprintf(path, sizeof path, "/tmp/tpops-test-notify-%d", (int)getpid());
	int fd = notify_socket(path, 0);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(sdnotify_ready(NULL), 0);
	expect_message(fd, "READY=1");
	assert_int_equal(sdnotify_ready("serving POP3 on port 110"), 0);
	expect_message(fd, "READY=1\nSTATUS=serving POP3 on port 110");
	assert_int_equal(sdnotify_status("two\nlines"), 0);
	expect_message(fd, "STATUS=two");
	assert_int_equal(sdnotify_reloading(), 0);
	expect_message(fd, "RELOADING=1\nMONOTONIC_USEC=");
	assert_int_equal(sdnotify_stopping(), 0);
	expect_message(fd, "STOPPING=1");
	close(fd);
	unlink(path);
	/* nobody listening any more */
	assert_int_equal(sdnotify_ready(NULL), -1);
	unsetenv("NOTIFY_SOCKET");
}

static void test_notify_abstract(void **state)
{
	char name[64];
	snprintf(name, sizeof name, "@tpops-test-notify-%d", (int)getpid());
	int fd = notify_socket(name, 1);
	setenv("NOTIFY_SOCKET", name, 1);
	assert_int_equal(sdnotify_ready(NULL), 0);
	expect_message(fd, "READY=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}

static void test_notify_unset_and_bad(void **state)
{
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sdnotify_ready(NULL), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(sdnotify_stopping(), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(sdnotify_ready(NULL), -1);
	setenv("NOTIFY_SOCKET", "@", 1);
	assert_int_equal(sdnotify_ready(NULL), -1);
	char longpath[200];
	memset(longpath, 'x', sizeof longpath);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	setenv("NOTIFY_SOCKET", longpath, 1);
	assert_int_equal(sdnotify_ready(NULL), -1);
	unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_activated),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_closed_fd),
		cmocka_unit_test(test_two_sockets_named),
		cmocka_unit_test(test_environment),
		cmocka_unit_test(test_notify_path),
		cmocka_unit_test(test_notify_abstract),
		cmocka_unit_test(test_notify_unset_and_bad),
	};
	return cmocka_run_group_tests_name("sd_listen", tests, NULL, NULL);
}
