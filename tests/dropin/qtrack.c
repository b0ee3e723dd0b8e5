/*
 * qtrack: a minimal C client of Corosync's libquorum (model V1), the drop-in tier's
 * tracking client.  It prints the trace format of tests/chaos/chaos_client.py, one JSON
 * object per line on stdout, flushed at once, ``t`` being CLOCK_MONOTONIC seconds:
 *
 *   {"t","node","kind":"start","pid"}
 *   {"t","node","kind":"connect","quorum_type"}
 *   {"t","node","kind":"nodelist","ring":[rep,seq],"members","joined","left"}
 *   {"t","node","kind":"quorum","ring":[rep,seq],"quorate":0|1,"members"}
 *   {"t","node","kind":"init_failed","error"}          initialize refused: exit 2
 *   {"t","node","kind":"disconnect","error"}           the daemon went away: exit 1
 *   {"t","node","kind":"exit"}                         SIGTERM/SIGINT or lifetime over
 *
 * Lists are sorted.  Usage: qtrack NODE [LIFETIME_S] (default lifetime 120 s).
 *
 * Build: gcc -Wall -Wextra -Werror -o qtrack qtrack.c -lquorum -lcorosync_common
 */

#include <corosync/corotypes.h>
#include <corosync/quorum.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned int node;
static volatile sig_atomic_t stop_requested;

static void on_signal(int signum)
{
	(void)signum;
	stop_requested = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void begin(const char *kind)
{
	printf("{\"t\":%.6f,\"node\":%u,\"kind\":\"%s\"", now(), node, kind);
}

static void end(void)
{
	printf("}\n");
	fflush(stdout);
}

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a;
	uint32_t y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static void list(const char *name, uint32_t entries, const uint32_t *ids)
{
	uint32_t sorted[entries > 0 ? entries : 1];
	uint32_t i;

	memcpy(sorted, ids, entries * sizeof(uint32_t));
	qsort(sorted, entries, sizeof(uint32_t), compare_u32);
	printf(",\"%s\":[", name);
	for (i = 0; i < entries; i++) {
		printf(i ? ",%" PRIu32 : "%" PRIu32, sorted[i]);
	}
	printf("]");
}

static void ring(struct quorum_ring_id ring_id)
{
	printf(",\"ring\":[%" PRIu32 ",%" PRIu64 "]", ring_id.nodeid, ring_id.seq);
}

static void on_quorum(quorum_handle_t handle, uint32_t quorate,
		      struct quorum_ring_id ring_id,
		      uint32_t member_list_entries, const uint32_t *member_list)
{
	(void)handle;
	begin("quorum");
	ring(ring_id);
	printf(",\"quorate\":%d", quorate ? 1 : 0);
	list("members", member_list_entries, member_list);
	end();
}

static void on_nodelist(quorum_handle_t handle, struct quorum_ring_id ring_id,
			uint32_t member_list_entries, const uint32_t *member_list,
			uint32_t joined_list_entries, const uint32_t *joined_list,
			uint32_t left_list_entries, const uint32_t *left_list)
{
	(void)handle;
	begin("nodelist");
	ring(ring_id);
	list("members", member_list_entries, member_list);
	list("joined", joined_list_entries, joined_list);
	list("left", left_list_entries, left_list);
	end();
}

static void error_line(const char *kind, cs_error_t err)
{
	begin(kind);
	printf(",\"error\":\"%s\"", cs_strerror(err));
	end();
}

int main(int argc, char *argv[])
{
	quorum_handle_t handle;
	quorum_model_v1_data_t data;
	uint32_t quorum_type = 0;
	struct sigaction sa;
	struct pollfd pfd;
	double deadline;
	cs_error_t err;
	int fd;
	int status = 0;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s NODE [LIFETIME_S]\n", argv[0]);
		return 64;
	}
	node = (unsigned int)strtoul(argv[1], NULL, 10);
	deadline = now() + (argc == 3 ? strtod(argv[2], NULL) : 120.0);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	begin("start");
	printf(",\"pid\":%ld", (long)getpid());
	end();

	memset(&data, 0, sizeof(data));
	data.model = QUORUM_MODEL_V1;
	data.quorum_notify_fn = on_quorum;
	data.nodelist_notify_fn = on_nodelist;
	err = quorum_model_initialize(&handle, QUORUM_MODEL_V1, (quorum_model_data_t *)&data,
				      &quorum_type, NULL);
	if (err != CS_OK) {
		error_line("init_failed", err);
		return 2;
	}
	begin("connect");
	printf(",\"quorum_type\":%" PRIu32, quorum_type);
	end();

	err = quorum_trackstart(handle, CS_TRACK_CHANGES | CS_TRACK_CURRENT);
	if (err == CS_OK) {
		err = quorum_fd_get(handle, &fd);
	}
	while (err == CS_OK && !stop_requested) {
		double left = deadline - now();

		if (left <= 0) {
			break;
		}
		pfd.fd = fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, left > 0.2 ? 200 : (int)(left * 1000) + 1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			perror("poll");
			status = 3;
			break;
		}
		if (pfd.revents) {
			err = quorum_dispatch(handle, CS_DISPATCH_ALL);
		}
	}
	if (err != CS_OK) {
		error_line("disconnect", err);
		status = 1;
	} else if (status == 0) {
		begin("exit");
		end();
	}
	quorum_finalize(handle);
	return status;
}
