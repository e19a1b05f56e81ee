/* Unit tests of the counters (src/metrics.c): every thread counts into a
 * block of its own, and the page sums them exactly, also the counts of
 * threads that have ended and gauges moved up on one thread and down on
 * another. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "metrics.h"

#define THREADS 4
#define ROUNDS 20000

/* The value of one sample line of the Prometheus page ("name{labels}"),
 * or -1 when it is not there. */
static long long sample_value(const char *page, const char *sample)
{
	size_t len = strlen(sample);
	for (const char *p = page; p != NULL && *p != '\0';) {
		if (strncmp(p, sample, len) == 0 && p[len] == ' ')
			return strtoll(p + len + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static char *page(void)
{
	struct buf b = {0};
	struct metrics_live live = {0};
	metrics_render(&b, METRICS_PROMETHEUS, &live);
	return buf_steal(&b);
}

/* What one session of the test does, ROUNDS times. */
static void *count(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		metrics_connection_accepted();
		metrics_login("USER", LOGIN_RESULT_OK);
		metrics_message_retrieved(100);
		metrics_quit_commit(i % 10 != 0);
	}
	return NULL;
}

static void *start_jobs(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++)
		metrics_job_started();
	return NULL;
}

static void *finish_jobs(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++)
		metrics_job_finished(JOB_COMMIT, 0.002);
	return NULL;
}

static void test_threads_alive_and_ended_sum_exactly(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	/* two threads end before the page, two count on while it is made */
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, count, NULL), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (int i = 2; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, count, NULL), 0);
	char *during = page(); /* while two count: within the bounds */
	long long accepted = sample_value(during, "tpops_connections_accepted_total");
	assert_true(accepted >= 2 * ROUNDS && accepted <= THREADS * ROUNDS);
	free(during);
	for (int i = 2; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	count(NULL); /* and the main thread, which does not end */

	char *p = page();
	const long long n = (THREADS + 1) * (long long)ROUNDS;
	assert_int_equal(sample_value(p, "tpops_connections_accepted_total"), n);
	assert_int_equal(sample_value(p, "tpops_logins_total{method=\"USER\",result=\"ok\"}"), n);
	assert_int_equal(sample_value(p, "tpops_messages_retrieved_total"), n);
	assert_int_equal(sample_value(p, "tpops_retrieved_bytes_total"), 100 * n);
	assert_int_equal(sample_value(p, "tpops_quit_commits_total{result=\"ok\"}"), n - n / 10);
	assert_int_equal(sample_value(p, "tpops_quit_commits_total{result=\"failed\"}"), n / 10);
	free(p);
}

static void test_gauges_moved_on_other_threads(void **state)
{
	(void)state;
	/* queued here, started on one thread, finished on another */
	for (int i = 0; i < ROUNDS; i++)
		metrics_job_queued();
	char *p = page();
	assert_int_equal(sample_value(p, "tpops_storage_jobs_queued"), ROUNDS);
	free(p);
	pthread_t starter, finisher;
	assert_int_equal(pthread_create(&starter, NULL, start_jobs, NULL), 0);
	assert_int_equal(pthread_join(starter, NULL), 0);
	p = page();
	assert_int_equal(sample_value(p, "tpops_storage_jobs_queued"), 0);
	assert_int_equal(sample_value(p, "tpops_storage_jobs_running"), ROUNDS);
	free(p);
	assert_int_equal(pthread_create(&finisher, NULL, finish_jobs, NULL), 0);
	assert_int_equal(pthread_join(finisher, NULL), 0);
	p = page();
	assert_int_equal(sample_value(p, "tpops_storage_jobs_running"), 0);
	assert_int_equal(
		sample_value(p, "tpops_storage_job_duration_seconds_count{kind=\"commit\"}"),
		ROUNDS);
	assert_int_equal(
		sample_value(
			p,
			"tpops_storage_job_duration_seconds_bucket{kind=\"commit\",le=\"0.001\"}"),
		0);
	assert_int_equal(
		sample_value(
			p,
			"tpops_storage_job_duration_seconds_bucket{kind=\"commit\",le=\"0.0025\"}"),
		ROUNDS);
	free(p);
}

int main(void)
{
	metrics_enable();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_alive_and_ended_sum_exactly),
		cmocka_unit_test(test_gauges_moved_on_other_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
