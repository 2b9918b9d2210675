#!/bin/bash
# Transient faults on the openai provider are retried and the task completes.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"
llm_faults openai
