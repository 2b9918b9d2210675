/*
 * escape-probe: tries, from inside the sandbox, what the sandbox must
 * refuse, and prints one "name=RESULT" line per attempt, RESULT being "ok"
 * or the errno name (EPERM, ...).  test-sandbox copies it into a workspace
 * and runs it there.
 *
 *   escape-probe                  every syscall attempt
 *   escape-probe connect IP PORT  one TCP connection attempt
 *   escape-probe memfd MIB        fill memfds (kept open, unmapped) up to
 *                                 MIB MiB, printing memfd_mib=N as it goes
 *   escape-probe sysvshm MIB      the same with SysV shared memory segments
 *                                 (filled, then detached)
 *   escape-probe storm SECONDS    a fork storm that holds every process it
 *                                 gets for SECONDS (a failed fork is retried,
 *                                 not fatal as in a shell); the first
 *                                 process prints storm_fork=ERRNO once
 */
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NOWHERE "/nonexistent-orch-escape-probe"

static void
report(const char *name, long rc)
{
	if (rc >= 0)
		printf("%s=ok\n", name);
	else
		printf("%s=%s\n", name, strerrorname_np(errno));
	fflush(stdout);
}

/* clone(2) with CLONE_NEWUSER: the child, if any, exits at once. */
static long
try_clone_newuser(void)
{
	long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);

	if (rc == 0)
		_exit(0);
	if (rc > 0)
		waitpid((pid_t)rc, NULL, 0);
	return rc;
}

static long
try_clone3_newuser(void)
{
	uint64_t args[11];
	long rc;

	memset(args, 0, sizeof args);
	args[0] = CLONE_NEWUSER;
	args[4] = SIGCHLD; /* exit_signal */
	rc = syscall(SYS_clone3, args, 64);
	if (rc == 0)
		_exit(0);
	if (rc > 0)
		waitpid((pid_t)rc, NULL, 0);
	return rc;
}

static long
try_perf(void)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof attr);
	attr.size = sizeof attr;
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.exclude_kernel = 1;
	return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
}

static long
try_vm_readv(void)
{
	char a[8] = "abcdefg", b[8];
	struct iovec l = {b, sizeof b}, r = {a, sizeof a};

	return syscall(SYS_process_vm_readv, getpid(), &l, 1, &r, 1, 0);
}

#if defined(__x86_64__)
/* ptrace(PTRACE_TRACEME) through the i386 entry point (int 0x80). */
static long
try_ptrace_i386(void)
{
	long rc;

	__asm__ volatile("int $0x80"
	                 : "=a"(rc)
	                 : "a"(26L), "b"(0L), "c"(0L), "d"(0L), "S"(0L)
	                 : "memory");
	if (rc < 0 && rc > -4096) {
		errno = (int)-rc;
		return -1;
	}
	return rc;
}
#endif

/* socket(family, type, protocol), closed again. */
static long
try_socket(long family, int type, int protocol)
{
	long fd = syscall(SYS_socket, family, type, protocol);

	if (fd >= 0)
		close((int)fd);
	return fd;
}

static long
try_socketpair(long family)
{
	int sv[2];
	long rc = syscall(SYS_socketpair, family, SOCK_STREAM, 0, sv);

	if (rc == 0) {
		close(sv[0]);
		close(sv[1]);
	}
	return rc;
}

static long
try_memfd(void)
{
	int fd = memfd_create("probe", 0);

	if (fd >= 0)
		close(fd);
	return fd;
}

#define CHUNK (8 << 20)

/*
 * Hold up to mib MiB in memfds that are written and left unmapped: the
 * memory is in no process's address space.
 */
static int
probe_memfd(long mib)
{
	static char buf[1 << 20];
	long held = 0;

	memset(buf, 'm', sizeof buf);
	while (held < mib) {
		int fd = memfd_create("probe", 0);

		if (fd == -1) {
			report("memfd", -1);
			return 1;
		}
		for (int i = 0; i < CHUNK / (int)sizeof buf; i++) {
			if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
				report("memfd_write", -1);
				printf("memfd_mib=%ld\n", held);
				return 1;
			}
			held++;
		}
		printf("memfd_mib=%ld\n", held);
		fflush(stdout);
	}
	printf("memfd_done\n");
	return 0;
}

/* The same with SysV segments: each filled, detached, and left. */
static int
probe_sysvshm(long mib)
{
	long held = 0;

	while (held < mib) {
		int id = shmget(IPC_PRIVATE, CHUNK, IPC_CREAT | 0600);
		char *p;

		if (id == -1) {
			report("shmget", -1);
			return 1;
		}
		if ((p = shmat(id, NULL, 0)) == (void *)-1) {
			report("shmat", -1);
			return 1;
		}
		memset(p, 's', CHUNK);
		shmdt(p);
		held += CHUNK >> 20;
		printf("sysvshm_mib=%ld\n", held);
		fflush(stdout);
	}
	printf("sysvshm_done\n");
	return 0;
}

static int
probe_storm(long seconds)
{
	time_t end = time(NULL) + seconds;
	pid_t first = getpid();
	int told = 0;

	while (time(NULL) < end) {
		if (fork() != -1)
			continue; /* parent and child alike go on */
		if (getpid() == first && !told) {
			report("storm_fork", -1);
			told = 1;
		}
		usleep(10000);
	}
	return 0;
}

static int
probe_all(void)
{
	char c = 'x';
	int fd, n;
	size_t params[16];

	report("getpid", getpid());
	report("ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
	/*
	 * Targets that do not exist: outside a filter these fail with ENOENT
	 * and change nothing (the probe may be run by hand, even as root).
	 */
	report("mount", mount("none", NOWHERE, "tmpfs", 0, NULL));
	report("umount2", umount2(NOWHERE, MNT_DETACH));
	report("unshare_user", unshare(CLONE_NEWUSER));
	report("unshare_ns", unshare(CLONE_NEWNS));
	report("clone_newuser", try_clone_newuser());
	report("clone3_newuser", try_clone3_newuser());
	fd = open("/proc/self/ns/user", O_RDONLY);
	report("setns", setns(fd, 0));
	if (fd != -1)
		close(fd);
	report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID,
	                     KEY_SPEC_SESSION_KEYRING, 0));
	report("add_key", syscall(SYS_add_key, "user", "orch", "x", 1,
	                      KEY_SPEC_SESSION_KEYRING));
	report("bpf", syscall(SYS_bpf, 0, NULL, 0));
	report("perf_event_open", try_perf());
	report("userfaultfd", syscall(SYS_userfaultfd, 0));
	report("process_vm_readv", try_vm_readv());
	report("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
	report("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/tmp", 0));
	report("pivot_root", syscall(SYS_pivot_root, NOWHERE, NOWHERE));
	memset(params, 0, sizeof params);
	report("io_uring_setup", syscall(SYS_io_uring_setup, 1, params));
	report("finit_module", syscall(SYS_finit_module, -1, "", 0));
	report("tiocsti", ioctl(0, TIOCSTI, &c));
	report(
	    "tiocsti_high", syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c));
	c = 0;
	report("tioclinux", ioctl(0, TIOCLINUX, &c));
	report("fionread", ioctl(0, FIONREAD, &n));
	report("memfd_create", try_memfd());
	report("socket_unix", try_socket(AF_UNIX, SOCK_STREAM, 0));
	report("socket_inet", try_socket(AF_INET, SOCK_STREAM, 0));
	report("socket_inet6", try_socket(AF_INET6, SOCK_DGRAM, 0));
	report("socket_netlink_route",
	    try_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
	report("socket_netlink_audit",
	    try_socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT));
	report("socket_netlink_uevent",
	    try_socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT));
	report("socket_vsock", try_socket(AF_VSOCK, SOCK_STREAM, 0));
	report("socket_packet", try_socket(AF_PACKET, SOCK_DGRAM, 0));
	report("socket_alg", try_socket(AF_ALG, SOCK_SEQPACKET, 0));
	/* AF_VSOCK in the low 32 bits: the kernel reads an int. */
	report("socket_vsock_high",
	    try_socket(0x100000000L | AF_VSOCK, SOCK_STREAM, 0));
	report("socketpair_vsock", try_socketpair(AF_VSOCK));
	report("socketpair_unix", try_socketpair(AF_UNIX));
#if defined(__x86_64__)
	report("ptrace_i386", try_ptrace_i386());
	/* x32's ptrace is 521 with the x32 bit. */
	report(
	    "ptrace_x32", syscall(0x40000000L | 521, PTRACE_TRACEME, 0, 0, 0));
#endif
	return 0;
}

static int
probe_connect(const char *ip, const char *port)
{
	struct sockaddr_in sin;
	int fd;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)atoi(port));
	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", ip);
		return 2;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	report("socket", fd);
	if (fd == -1)
		return 1;
	report("connect", connect(fd, (struct sockaddr *)&sin, sizeof sin));
	close(fd);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "connect") == 0)
		return probe_connect(argv[2], argv[3]);
	if (argc == 3 && strcmp(argv[1], "memfd") == 0)
		return probe_memfd(atol(argv[2]));
	if (argc == 3 && strcmp(argv[1], "sysvshm") == 0)
		return probe_sysvshm(atol(argv[2]));
	if (argc == 3 && strcmp(argv[1], "storm") == 0)
		return probe_storm(atol(argv[2]));
	if (argc != 1) {
		fprintf(stderr, "usage: escape-probe [connect IP PORT | "
		                "memfd MIB | sysvshm MIB | storm SECONDS]\n");
		return 2;
	}
	return probe_all();
}
