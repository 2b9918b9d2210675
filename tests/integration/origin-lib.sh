# Helpers for the tests of --repo as an origin (wf-origin.sh): a bare
# origin repository, the refs its user owns, an ssh stand-in.  Sourced
# instead of wf-lib.sh (which it sources).  Not a test itself.
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

# origin_setup WORK ORIGIN: a small repository WORK (wf_repo) and its bare
# clone ORIGIN, with HEAD on main and a user branch "feature" one commit
# ahead of it.
origin_setup() {
	wf_repo "$1"
	git -C "$1" checkout -q feature
	printf 'feature\n' >"$1/F.txt"
	git -C "$1" add F.txt
	git -C "$1" -c user.name=t -c user.email=t@t commit -qm feature
	git -C "$1" checkout -q main
	git clone -q --bare "$1" "$2"
}

# origin_user_refs ORIGIN: every ref outside orch's names, with its commit.
origin_user_refs() {
	git -C "$1" for-each-ref --format='%(refname) %(objectname)' |
		grep -v -e ' refs/orch/' -e '^refs/orch/' -e '^refs/heads/orch/'
	git -C "$1" symbolic-ref HEAD
}

# origin_fake_ssh PATH: an "ssh" for GIT_SSH_COMMAND (GIT_SSH_VARIANT
# simple: HOST COMMAND) that logs the agent it was given and the command,
# then runs the command here: the node's ssh without a network.
origin_fake_ssh() {
	cat >"$1" <<EOF
#!/bin/sh
echo "SSH_AUTH_SOCK=\${SSH_AUTH_SOCK:-}" >>"$1.log"
echo "CMD=\$2" >>"$1.log"
exec sh -c "\$2"
EOF
	chmod +x "$1"
}
