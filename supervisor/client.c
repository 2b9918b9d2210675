/*
 * The CLI's side of the control API: HTTP over the service's Unix socket,
 * through libcurl (CURLOPT_UNIX_SOCKET_PATH).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "common.h"
#include "supervisor.h"

#define CLIENT_MAX_REPLY (64 * 1024 * 1024)

struct client_buf {
	char *p;
	size_t len;
};

static size_t
client_write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct client_buf *b = arg;
	size_t len = size * n;

	if (b->len + len > CLIENT_MAX_REPLY)
		return 0;
	b->p = xrealloc(b->p, b->len + len + 1);
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return len;
}

int
client_request(const char *method, const char *path, json_t *body,
    json_t **reply, int *code, char **err)
{
	CURL *c;
	CURLcode rc;
	struct curl_slist *hdrs = NULL;
	struct client_buf b = {NULL, 0};
	char *sock = control_socket_path(), *url, *s = NULL;
	long status = 0;
	json_error_t jerr;

	*reply = NULL;
	*code = 0;
	if ((c = curl_easy_init()) == NULL) {
		*err = xstrdup("curl_easy_init failed");
		free(sock);
		return -1;
	}
	url = xasprintf("http://orch%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, client_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (body != NULL) {
		s = json_dumps(body, JSON_COMPACT);
		hdrs =
		    curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, s);
	}
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(url);
	free(s);
	if (rc != CURLE_OK) {
		*err = xasprintf("cannot reach the service on %s: %s", sock,
		    curl_easy_strerror(rc));
		free(sock);
		free(b.p);
		return -1;
	}
	free(sock);
	*code = (int)status;
	*reply = json_loadb(b.p ? b.p : "", b.len, 0, &jerr);
	free(b.p);
	if (*reply == NULL) {
		*err = xasprintf("the service sent a reply that is not JSON "
		                 "(HTTP %ld)",
		    status);
		return -1;
	}
	if (status >= 400) {
		const char *m =
		    json_string_value(json_object_get(*reply, "error"));
		*err = xstrdup(m ? m : "the service refused the request");
		return -1;
	}
	return 0;
}

int
client_service_running(void)
{
	json_t *r;
	char *err = NULL;
	int code, ok;

	ok = client_request("GET", "/v1/health", NULL, &r, &code, &err) == 0;
	json_decref(r);
	free(err);
	return ok;
}
