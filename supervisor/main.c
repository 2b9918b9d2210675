/*
 * orch-supervisor: runs LLM coding-agent tasks durably and safely.  See
 * README.md for the commands, states and variables.
 */

#include "cli.h"

int
main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
