/*
 * libFuzzer target for the .env parser: any input either sets variables or
 * is refused with a FILE:LINE message; never a crash, a leak or an exit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
clear_strings(void)
{
	char **strs[] = {&cfg.state_dir, &cfg.db_path, &cfg.env_file,
	    &cfg.provider, &cfg.base_url, &cfg.model, &cfg.api_key, &cfg.script,
	    &cfg.scripted_trace, &cfg.verify_command, &cfg.profiles_dir,
	    &cfg.worker_path, &cfg.model_path, &cfg.llm_fallback_models,
	    &cfg.notify_url};

	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
		free(*strs[i]);
		*strs[i] = NULL;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fmemopen((void *)data, size, "r");
	char *err = NULL;
	int rc;

	if (size == 0 || f == NULL) {
		if (f != NULL)
			fclose(f);
		return 0;
	}
	rc = config_parse_env(f, "fuzz.env", &err);
	fclose(f);
	if ((rc == -1) != (err != NULL) ||
	    (err != NULL && strncmp(err, "fuzz.env:", 9) != 0))
		abort();
	free(err);
	clear_strings();
	return 0;
}
