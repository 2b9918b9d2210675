/*
 * The worker's link to the supervisor (worker/main.c), left out of the unit
 * tests and fuzz targets that run the model code: heartbeats and log lines
 * go nowhere, and backoff sleeps return at once.
 */
#include "common.h"
#include "worker.h"

void
wio_heartbeat(void *unused)
{
	(void)unused;
}

void
wio_sleep(unsigned ms)
{
	(void)ms;
}

void
wio_log(int kind, const char *fmt, ...)
{
	(void)kind;
	(void)fmt;
}
