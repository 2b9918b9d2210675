#!/bin/bash
# Chaos over three nodes: M tasks while, every 1 to 3 s, one of these
# happens at random: a node is killed (SIGKILL; started again once its
# name is free), a node is paused (SIGSTOP) for 1 to 6 s, past its lease
# of 3 s about half the time, then continued; the database is restarted
# (immediate); a worker is killed.  Then the single-node chaos test's
# invariants (tests/chaos/chaos.sh) and the cluster's: every task
# completed with the reference tree (no step applied twice), no committed
# model reply asked again, each lease epoch had one owner, no stray
# worker or sandbox.
#
#   tests/multinode/mn-chaos.sh [-m TASKS] [-k EVENTS] [-s SEED]
# Defaults: 100 tasks, at most 60 events (the long run, by hand); meson's
# mn-chaos runs -m 40 -k 25.  Output is TAP.
. "$ORCH_TESTS_DIR/multinode/lib.sh"

M=100
K=60
SEED=$$
while getopts m:k:s: o; do
	case $o in
	m) M=$OPTARG ;;
	k) K=$OPTARG ;;
	s) SEED=$OPTARG ;;
	*) exit 2 ;;
	esac
done
RANDOM=$SEED
echo "# multi-node chaos: $M tasks, $K events at most, seed $SEED"

mn_script 0.1
mn_setup
node_start a
mn_audit_install
mn_reference
node_start b
node_start c
submit_tasks "$M"

live() { # the nodes running now
	local n
	for n in a b c; do
		[ -n "${NODE[$n]:-}" ] && echo "$n"
	done
}
pick() { # a random word of $@
	shift $((RANDOM % $#))
	echo "$1"
}
declare -A did=()
for _ in $(seq 1 "$K"); do
	sleep "$((RANDOM % 3 + 1)).$((RANDOM % 10))"
	all_ended && break
	# shellcheck disable=SC2046 # node names: words by design
	n=$(pick $(live))
	r=$((RANDOM % 10))
	if [ $r -lt 3 ]; then
		what="SIGKILL node $n"
		node_stop "$n" KILL
		node_restart "$n"
	elif [ $r -lt 6 ]; then
		s=$((RANDOM % 6 + 1))
		what="SIGSTOP node $n for $s s"
		kill -STOP "${NODE[$n]}"
		sleep "$s"
		kill -CONT "${NODE[$n]}"
	elif [ $r -lt 7 ]; then
		what="database restart"
		db_restart
	else
		# The nodes' own children only: a worker's child between its
		# fork and its exec of bwrap is named orch-worker too, and
		# killing it is not a worker crash (its command fails instead).
		# shellcheck disable=SC2046 # pids: words by design
		set -- $(for w in "${!NODE[@]}"; do node_workers "$w"; done)
		[ $# -eq 0 ] && continue
		what="SIGKILL a worker"
		kill -9 "$(pick "$@")" 2>/dev/null
	fi
	did[$what]=$((${did[$what]:-0} + 1))
	echo "# $(date +%T) $what ($(count_state completed) completed)"
done
for what in "${!did[@]}"; do
	echo "# ${did[$what]} x $what"
done
wait_for $((60 + M * 4)) all_ended
mn_invariants
for n in a b c; do
	check "node $n is serving at the end" kill -0 "${NODE[$n]}"
done
mn_no_strays
done_testing
