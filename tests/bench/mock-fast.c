/*
 * mock-fast: a mock OpenAI chat-completions server for the benchmarks.
 *
 *     mock-fast --port-file FILE [--port N] [--delay-ms MS]
 *
 * Listens on 127.0.0.1 (a free port unless --port), writes the port to
 * FILE, and answers POST /v1/chat/completions (and /chat/completions) with
 * a canned streamed (SSE) reply: the terminal tool call of the stage named
 * by the X-Orch-Stage header, so that every stage is one model call but
 * implementing, which is two (a stage that changes nothing fails since the
 * empty-result catch, so it writes a file first):
 *
 *     planning      submit_plan   {"plan": "..."}
 *     implementing  write_file    {"path": "bench.txt", "content": "..."}
 *                   then, once the request holds a tool result,
 *                   finish        {"summary": "..."}
 *     reviewing     submit_review {"verdict": "approve", "comments": "..."}
 *
 * The request body is not parsed, only searched for "tool_call_id" (a tool
 * result in the conversation): the mock costs next to nothing.  With --delay-ms
 * the reply is sent that long after the request (a timer, so any number of
 * requests wait at once).  GET /ping answers "pong" (a floor for one HTTP round
 * trip).  SIGTERM/SIGINT stop it; it prints the number of requests it answered
 * on stderr.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static struct event_base *base;
static unsigned delay_ms;
static unsigned long long nreq;

#define CHUNK_HEAD                                                             \
	"data: "                                                               \
	"{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","      \
	"\"choices\":[{\"index\":0,"

static void
build_reply(struct evbuffer *b, const char *name, const char *args)
{
	evbuffer_add_printf(b,
	    CHUNK_HEAD "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	               "\"finish_reason\":null}]}\n\n" CHUNK_HEAD
	               "\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
	               "\"call_0\",\"type\":\"function\",\"function\":{"
	               "\"name\":\"%s\",\"arguments\":\"%s\"}}]},"
	               "\"finish_reason\":null}]}\n\n" CHUNK_HEAD
	               "\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
	               "data: {\"id\":\"chatcmpl-mock\",\"object\":"
	               "\"chat.completion.chunk\",\"choices\":[],\"usage\":{"
	               "\"prompt_tokens\":100,\"completion_tokens\":10,"
	               "\"total_tokens\":110}}\n\n"
	               "data: [DONE]\n\n",
	    name, args);
}

static void
reply_now(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *stage = evhttp_find_header(h, "X-Orch-Stage");
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	int answered;

	/* Only the implementer's second call carries a tool result. */
	answered = evbuffer_search(in, "\"tool_call_id\"", 14, NULL).pos != -1;
	evbuffer_drain(in, evbuffer_get_length(in));
	if (stage == NULL)
		stage = "";
	if (strcmp(stage, "planning") == 0)
		build_reply(b, "submit_plan",
		    "{\\\"plan\\\":\\\"1. Write bench.txt.\\\"}");
	else if (strcmp(stage, "implementing") == 0 && !answered)
		build_reply(b, "write_file",
		    "{\\\"path\\\":\\\"bench.txt\\\",\\\"content\\\":"
		    "\\\"benchmark\\\"}");
	else if (strcmp(stage, "implementing") == 0)
		build_reply(
		    b, "finish", "{\\\"summary\\\":\\\"Wrote bench.txt.\\\"}");
	else if (strcmp(stage, "reviewing") == 0)
		build_reply(b, "submit_review",
		    "{\\\"verdict\\\":\\\"approve\\\",\\\"comments\\\":"
		    "\\\"Fine.\\\"}");
	else {
		evbuffer_add_printf(b,
		    "{\"error\":{\"message\":\"mock-fast: no reply for stage "
		    "'%s'\",\"type\":\"invalid_request_error\"}}",
		    stage);
		evhttp_add_header(oh, "Content-Type", "application/json");
		evhttp_send_reply(req, 400, "Bad Request", b);
		evbuffer_free(b);
		return;
	}
	evhttp_add_header(oh, "Content-Type", "text/event-stream");
	evhttp_add_header(oh, "Cache-Control", "no-cache");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
	nreq++;
}

static void
delayed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evhttp_request *req = arg;

	(void)fd;
	(void)what;
	reply_now(req);
}

static void
request_cb(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *b;

	(void)arg;
	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET &&
	    strcmp(uri, "/ping") == 0) {
		b = evbuffer_new();
		evbuffer_add(b, "pong\n", 5);
		evhttp_send_reply(req, 200, "OK", b);
		evbuffer_free(b);
		nreq++;
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST ||
	    (strncmp(uri, "/v1/chat/completions", 20) != 0 &&
	        strncmp(uri, "/chat/completions", 17) != 0)) {
		evhttp_send_error(req, 404, "no such path");
		return;
	}
	/* The body (read whole by evhttp) is searched, then dropped, when
	 * the reply is made. */
	if (delay_ms == 0) {
		reply_now(req);
		return;
	}
	struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
	event_base_once(base, -1, EV_TIMEOUT, delayed_cb, req, &tv);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(base, NULL);
}

static void
usage(void)
{
	fprintf(stderr, "usage: mock-fast --port-file FILE [--port N] "
	                "[--delay-ms MS]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *port_file = NULL;
	unsigned port = 0;
	struct evhttp *http;
	struct evhttp_bound_socket *bs;
	struct event *sigterm, *sigint;
	FILE *f;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
			port_file = argv[++i];
		else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--delay-ms") == 0 && i + 1 < argc)
			delay_ms = (unsigned)strtoul(argv[++i], NULL, 10);
		else
			usage();
	}
	if (port_file == NULL)
		usage();
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	http = evhttp_new(base);
	evhttp_set_gencb(http, request_cb, NULL);
	evhttp_set_max_body_size(http, 64 * 1024 * 1024);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	bs = evhttp_bind_socket_with_handle(
	    http, "127.0.0.1", (ev_uint16_t)port);
	if (bs == NULL) {
		fprintf(
		    stderr, "mock-fast: cannot listen on 127.0.0.1:%u\n", port);
		return 1;
	}
	{
		/* Bound to 127.0.0.1: an IPv4 address. */
		struct sockaddr_in sin = {0};
		ev_socklen_t len = sizeof sin;
		evutil_socket_t fd = evhttp_bound_socket_get_fd(bs);

		if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
			perror("getsockname");
			return 1;
		}
		port = ntohs(sin.sin_port);
	}
	{
		char tmp[4096];

		snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
		if ((f = fopen(tmp, "w")) == NULL) {
			perror(tmp);
			return 1;
		}
		fprintf(f, "%u\n", port);
		fclose(f);
		if (rename(tmp, port_file) == -1) {
			perror(port_file);
			return 1;
		}
	}
	sigterm = evsignal_new(base, SIGTERM, stop_cb, NULL);
	sigint = evsignal_new(base, SIGINT, stop_cb, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_base_dispatch(base);
	fprintf(stderr, "mock-fast: %llu requests answered\n", nreq);
	event_free(sigterm);
	event_free(sigint);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
