/*
 * The seccomp filter every sandboxed command runs under.
 */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <seccomp.h>

#include "common.h"
#include "sandbox-int.h"

#define SECCOMP_MAX_BPF (1 << 20) /* BPF is at most 4096 insns of 8 bytes */

/* The seccomp filter. */

/*
 * Syscalls that return EPERM in the sandbox: kernel attack surface and
 * ways out that no build, test or editor needs.  mount, unshare and setns
 * are also what bwrap itself uses, but it installs the filter (--seccomp)
 * just before exec'ing the command, after its own setup.
 */
static const char *const seccomp_denied[] = {
    "ptrace",
    "mount",
    "umount",
    "umount2",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "setns",
    "unshare",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "userfaultfd",
    "process_vm_readv",
    "process_vm_writev",
    "open_by_handle_at",
    "name_to_handle_at",
    /* io_uring operations bypass seccomp once the ring exists. */
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    /* Memory that is neither in the address space nor in a cgroup's view. */
    "memfd_secret",
};

/*
 * Without a memory cgroup nothing counts memory that is in no process's
 * address space: a memfd or a SysV shared memory segment filled and
 * unmapped escapes RLIMIT_AS (and the OOM killer, which looks at RSS).
 * Then they answer ENOSYS, as on an old kernel, so that programs fall back
 * (to a file in /tmp or /dev/shm, which are sized tmpfs).  "ipc" is the
 * i386 multiplexer for the SysV calls.
 */
static const char *const seccomp_nocgroup[] = {
    "memfd_create",
    "shmget",
    "ipc",
};

/*
 * One argument comparison, every field set: libseccomp's two-argument
 * SCMP_An() forms leave datum_b to the compiler, which clang's
 * -Wmissing-field-initializers refuses.
 */
static struct scmp_arg_cmp
arg_cmp(unsigned arg, enum scmp_compare op, scmp_datum_t a)
{
	struct scmp_arg_cmp c = {arg, op, a, 0};

	return c;
}

/*
 * The socket families a build or a test suite needs: AF_UNIX, and
 * AF_INET/AF_INET6, which in the sandbox's empty network namespace reach
 * only its own loopback.  Every other family is refused: some are not
 * isolated by a network namespace at all (AF_VSOCK reaches the hypervisor,
 * CID 2, and other VMs), others are kernel attack surface no build needs
 * (AF_PACKET, AF_BLUETOOTH, AF_ALG, AF_RDS, AF_TIPC, ...).
 *
 * AF_NETLINK is allowed, for NETLINK_ROUTE only: glibc's getaddrinfo
 * (AI_ADDRCONFIG) and getifaddrs(), hence Node's os.networkInterfaces(),
 * Python's and Go's interface lists, ask it which addresses exist, and
 * route netlink is per network namespace (it sees the sandbox's loopback
 * only; changing anything needs CAP_NET_ADMIN, which the sandbox lacks).
 * The other netlink protocols (audit, uevents, generic netlink families
 * that are not per namespace, sock_diag, ...) are refused.
 */
static const int socket_allowed[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};

/* Namespace flags clone(2) may not be given (same reason as unshare). */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
    CLONE_NEWCGROUP,
};

/*
 * socket(2) and socketpair(2) refuse every family but socket_allowed, and
 * netlink but NETLINK_ROUTE.  The family is compared on all 64 bits: a
 * value with high bits set is >= AF_MAX and refused, whatever its low
 * bits (the kernel would read them as an int).  i386's socketcall(2)
 * multiplexer passes its arguments in memory, out of the filter's sight:
 * it answers ENOSYS (glibc uses the direct calls, which are filtered).
 */
static int
seccomp_sockets(scmp_filter_ctx ctx)
{
	static const char *const calls[] = {"socket", "socketpair"};
	int rc, nr;

	for (size_t c = 0; c < nitems(calls); c++) {
		nr = seccomp_syscall_resolve_name(calls[c]);
		for (int af = 0; af < AF_MAX; af++) {
			int allowed = 0;

			for (size_t i = 0; i < nitems(socket_allowed); i++)
				allowed |= af == socket_allowed[i];
			if (allowed)
				continue;
			if ((rc = seccomp_rule_add(ctx,
			         SCMP_ACT_ERRNO(EAFNOSUPPORT), nr, 1,
			         arg_cmp(0, SCMP_CMP_EQ, (scmp_datum_t)af))) <
			    0)
				return rc;
		}
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT),
		         nr, 1,
		         arg_cmp(0, SCMP_CMP_GE, (scmp_datum_t)AF_MAX))) < 0)
			return rc;
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPROTONOSUPPORT),
		         nr, 2,
		         arg_cmp(0, SCMP_CMP_EQ, (scmp_datum_t)AF_NETLINK),
		         arg_cmp(
		             2, SCMP_CMP_NE, (scmp_datum_t)NETLINK_ROUTE))) < 0)
			return rc;
	}
	nr = seccomp_syscall_resolve_name("socketcall");
	if (nr != __NR_SCMP_ERROR &&
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0)) < 0)
		return rc;
	return 0;
}

/*
 * Build the filter and export it as BPF into a memfd for bwrap's
 * --seccomp.  Default allow; the rules above return EPERM, the socket
 * rules EAFNOSUPPORT or EPROTONOSUPPORT, and with nocgroup (no memory
 * cgroup counts the command) seccomp_nocgroup's calls ENOSYS.
 *
 * Architectures: the native one and, on x86_64, also i386 and x32, which
 * a process can reach from an x86_64 kernel (int 0x80, the x32 syscall
 * bit); the same rules are compiled for each.  Any other architecture
 * kills the process (SCMP_FLTATR_ACT_BADARCH).
 *
 * ioctl: TIOCSTI (push input into a terminal) and TIOCLINUX are refused,
 * compared on the low 32 bits only (the kernel takes the request as an
 * unsigned int, so 0x100005412 is TIOCSTI too).  The sandbox has no
 * terminal anyway (stdin is /dev/null, --new-session): this is the second
 * wall.
 *
 * clone3 returns ENOSYS: its flags sit in memory seccomp cannot read, and
 * ENOSYS makes glibc fall back to clone(2), whose namespace flags are
 * refused above.
 */
static int
seccomp_build(int nocgroup, char **cause)
{
	scmp_filter_ctx ctx;
	int fd = -1, rc;

	if ((ctx = seccomp_init(SCMP_ACT_ALLOW)) == NULL) {
		*cause = xasprintf("seccomp_init failed");
		return -1;
	}
	if ((rc = seccomp_attr_set(
	         ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
		goto fail;
	if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
		if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X86)) < 0 &&
		    rc != -EEXIST)
			goto fail;
		if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X32)) < 0 &&
		    rc != -EEXIST)
			goto fail;
	}
	for (size_t i = 0; i < nitems(seccomp_denied); i++) {
		int nr = seccomp_syscall_resolve_name(seccomp_denied[i]);

		if (nr == __NR_SCMP_ERROR)
			continue; /* unknown to this libseccomp */
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0)) <
		    0)
			goto fail;
	}
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl),
	         1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCSTI))) < 0)
		goto fail;
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl),
	         1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCLINUX))) < 0)
		goto fail;
	for (size_t i = 0; i < nitems(clone_ns_flags); i++) {
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM),
		         SCMP_SYS(clone), 1,
		         SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i],
		             clone_ns_flags[i]))) < 0)
			goto fail;
	}
	if ((rc = seccomp_rule_add(
	         ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0)
		goto fail;
	for (size_t i = 0; nocgroup && i < nitems(seccomp_nocgroup); i++) {
		int nr = seccomp_syscall_resolve_name(seccomp_nocgroup[i]);

		if (nr == __NR_SCMP_ERROR)
			continue;
		if ((rc = seccomp_rule_add(
		         ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0)) < 0)
			goto fail;
	}
	if ((rc = seccomp_sockets(ctx)) < 0)
		goto fail;

	if ((fd = memfd_create("orch-seccomp", MFD_CLOEXEC)) == -1) {
		*cause = xasprintf("memfd_create: %s", strerror(errno));
		seccomp_release(ctx);
		return -1;
	}
	if ((rc = seccomp_export_bpf(ctx, fd)) < 0)
		goto fail;
	if (lseek(fd, 0, SEEK_SET) == -1) {
		rc = -errno;
		goto fail;
	}
	seccomp_release(ctx);
	return fd;

fail:
	*cause = xasprintf("building the seccomp filter: %s", strerror(-rc));
	if (fd != -1)
		close(fd);
	seccomp_release(ctx);
	return -1;
}

/*
 * The filter's BPF in a fresh memfd (bwrap reads it to the end: each run
 * needs its own offset).  libseccomp compiles the same rules every time,
 * which cost a sandboxed command a large part of its own setup: the BPF
 * is kept in c and only copied from the second run on.
 */
int
seccomp_memfd(struct sandbox_cache *c, int nocgroup, char **cause)
{
	struct stat st;
	int fd, i = nocgroup ? 1 : 0;

	if (c->bpf[i] == NULL) {
		if ((fd = seccomp_build(nocgroup, cause)) == -1)
			return -1;
		if (fstat(fd, &st) == -1 || st.st_size <= 0 ||
		    st.st_size > SECCOMP_MAX_BPF) {
			*cause = xasprintf(
			    "the seccomp filter's size: %s", strerror(errno));
			close(fd);
			return -1;
		}
		c->bpf[i] = xmalloc((size_t)st.st_size);
		c->bpflen[i] = (size_t)st.st_size;
		if (read_full(fd, c->bpf[i], c->bpflen[i]) != 1 ||
		    lseek(fd, 0, SEEK_SET) == -1) {
			*cause = xasprintf(
			    "reading the seccomp filter: %s", strerror(errno));
			free(c->bpf[i]);
			c->bpf[i] = NULL;
			close(fd);
			return -1;
		}
		return fd;
	}
	if ((fd = memfd_create("orch-seccomp", MFD_CLOEXEC)) == -1) {
		*cause = xasprintf("memfd_create: %s", strerror(errno));
		return -1;
	}
	if (write_all(fd, c->bpf[i], c->bpflen[i]) == -1 ||
	    lseek(fd, 0, SEEK_SET) == -1) {
		*cause = xasprintf("the seccomp filter: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}
