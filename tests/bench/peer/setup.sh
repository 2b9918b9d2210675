#!/bin/sh
# Install the LangGraph.js peer of the same-work benchmark (issue 16) into
# tests/bench/peer/node_modules, from package-lock.json.  Idempotent: does
# nothing when the installed tree loads.  Needs node >= 20 with npm, and,
# to build better-sqlite3 (the checkpointer's SQLite binding: no prebuilt
# binary is downloaded when GitHub is out of reach), node's own headers,
# python3, make and a C++ compiler for node-gyp.
#
#     tests/bench/peer/setup.sh          install, or say what is missing
#     tests/bench/peer/setup.sh --apt    as root on Debian: apt-get the
#                                        compilers first (not node itself)
#
# Not part of CI: only tests/bench/peer.py needs it.
set -eu

dir=$(cd "$(dirname "$0")" && pwd)
cd "$dir"

die() {
	echo "peer/setup.sh: $*" >&2
	exit 1
}

if [ "${1-}" = "--apt" ]; then
	[ "$(id -u)" -eq 0 ] || die "--apt: run as root"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    python3 make g++ >/dev/null
fi

loads() {
	node --input-type=module -e '
import Database from "better-sqlite3";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import { StateGraph } from "@langchain/langgraph";
new Database(":memory:").close();
' >/dev/null 2>&1
}

command -v node >/dev/null || die "node is missing: node >= 20 is needed" \
    "(Debian 12's nodejs is 18; e.g. the nodesource nodejs 20 package)"
command -v npm >/dev/null || die "npm is missing"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "node $(node -v) is too old: >= 20 is needed" \
    "(@langchain/core and better-sqlite3 12 require it)"

if [ -d node_modules ] && loads; then
	echo "peer/setup.sh: installed (node $(node -v))"
	exit 0
fi

# node-gyp needs the headers of the running node (its ABI, not any
# version's): they come with the nodesource package (/usr/include/node) or
# Debian's libnode-dev, or sit beside a node installed under a prefix.
nodedir=${npm_config_nodedir-}
if [ -z "$nodedir" ]; then
	prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
	for d in "$prefix" /usr /usr/local; do
		if [ -f "$d/include/node/node.h" ]; then
			nodedir=$d
			break
		fi
	done
fi
[ -n "$nodedir" ] || die "no node headers (include/node/node.h) beside" \
    "$(command -v node) nor in /usr or /usr/local: install the headers of" \
    "node $(node -v), or set npm_config_nodedir"
have=$(sed -n 's/^#define NODE_MODULE_VERSION \([0-9][0-9]*\).*/\1/p' \
    "$nodedir/include/node/node_version.h" | tail -n 1)
want=$(node -p process.versions.modules)
[ "$have" = "$want" ] || die "the headers in $nodedir are for module ABI" \
    "$have, node $(node -v) is $want"
for tool in python3 make g++; do
	command -v "$tool" >/dev/null || die "$tool is missing (node-gyp" \
	    "needs it): apt-get install python3 make g++, or run --apt"
done

export npm_config_nodedir="$nodedir"
npm ci --no-audit --no-fund
# npm versions that skip dependencies' install scripts leave the binding
# unbuilt: build it explicitly.
if ! loads; then
	npm rebuild better-sqlite3
fi
loads || die "the installed tree does not load: see the npm output above"
echo "peer/setup.sh: installed (node $(node -v), headers in $nodedir)"
