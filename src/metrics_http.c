/* The metrics listener (MetricsListen), libevent's evhttp on the
 * administration thread: GET /metrics (Prometheus text format, or
 * OpenMetrics when the scraper asks for it) and GET /health (200 or 503,
 * for a load balancer's check). */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "buf.h"
#include "log.h"

/* Requests are a line and a few headers; nothing has a body. */
#define HTTP_MAX_HEADERS 8192
#define HTTP_TIMEOUT_SECONDS 10

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
		  const char *body, size_t len)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	evhttp_add_header(headers, "Content-Type", type);
	evhttp_add_header(headers, "Cache-Control", "no-store");
	struct evbuffer *out = evbuffer_new();
	if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
		evbuffer_add(out, body, len);
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
}

/* OpenMetrics only for a scraper that asks for it (Prometheus does). */
static bool wants_openmetrics(struct evhttp_request *req)
{
	const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
	return accept != NULL && strstr(accept, "application/openmetrics-text") != NULL;
}

static void on_metrics(struct evhttp_request *req, struct admin *a)
{
	struct metrics_live live;
	admin_live(a, &live, NULL, 0);
	bool om = wants_openmetrics(req);
	struct buf out = BUF_INIT;
	metrics_render(&out, om ? METRICS_OPENMETRICS : METRICS_PROMETHEUS, &live);
	reply(req, 200, "OK",
	      om ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
		 : "text/plain; version=0.0.4; charset=utf-8",
	      buf_cstr(&out), out.len);
	buf_free(&out);
}

static void on_health(struct evhttp_request *req, struct admin *a)
{
	struct metrics_live live;
	char why[512];
	admin_live(a, &live, why, sizeof why);
	char body[600];
	int len = snprintf(body, sizeof body, live.healthy ? "ok\n" : "unavailable: %s\n", why);
	if (len < 0 || (size_t)len >= sizeof body)
		len = (int)strlen(body);
	reply(req, live.healthy ? 200 : 503, live.healthy ? "OK" : "Service Unavailable",
	      "text/plain; charset=utf-8", body, (size_t)len);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (path == NULL)
		path = "";
	if (strcmp(path, "/metrics") == 0)
		on_metrics(req, a);
	else if (strcmp(path, "/health") == 0)
		on_health(req, a);
	else
		reply(req, 404, "Not Found", "text/plain; charset=utf-8",
		      "not found: try /metrics or /health\n", 35);
}

int metrics_http_serve(struct admin *a)
{
	a->http = evhttp_new(a->base);
	if (a->http == NULL)
		return -1;
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(a->http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(a->http, 0);
	evhttp_set_timeout(a->http, HTTP_TIMEOUT_SECONDS);
	evhttp_set_gencb(a->http, on_request, a);
	if (evhttp_accept_socket(a->http, a->metrics_fd) != 0) {
		log_error("MetricsListen: libevent cannot accept on the metrics socket");
		return -1;
	}
	return 0;
}
