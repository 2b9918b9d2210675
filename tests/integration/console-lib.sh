# Helpers for the console-*.sh tests: the service with ORCH_HTTP_LISTEN on
# a free loopback port, and curl against it.  Sourced after lib.sh (or
# wf-lib.sh).  Not a test itself.

# free_port: a TCP port nothing listens on now.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# console_env: ORCH_HTTP_LISTEN and the base URL $URL.
console_env() {
	HTTP_PORT=$(free_port)
	export ORCH_HTTP_LISTEN="127.0.0.1:$HTTP_PORT"
	URL="http://127.0.0.1:$HTTP_PORT"
}

# console_token: the token the service uses.
console_token() { "$SUP" console-url --token; }

# http ARGS...: curl against the service, the status code on the last line.
http() {
	curl -s -o "$T/http.body" -D "$T/http.head" -w '%{http_code}' "$@"
}

# login NAME: a browser session in $T/jar, its CSRF token in $CSRF.
login() {
	rm -f "$T/jar"
	curl -s -c "$T/jar" -o /dev/null --data-urlencode "token=$(console_token)" \
		--data-urlencode "name=$1" "$URL/login"
	CSRF=$(curl -s -b "$T/jar" "$URL/submit" |
		sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
}
