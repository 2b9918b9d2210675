# Sandbox profile for the verifying stage: the build and the tests run; the workspace is writable (build outputs).
#
# Every command the agent runs in this stage goes through bubblewrap under
# this profile (worker/sandbox.c).  One directive per line; blank lines and
# lines starting with # are ignored.  A bad line stops the worker with
# "FILE:LINE: why".
#
#   workspace rw|ro        the task's worktree at /workspace (required, once)
#   tmpfs_size SIZE        size of the private /tmp (default 64M)
#   shm_size SIZE          size of the private /dev/shm (default 64M)
#   memory SIZE            memory of the whole command: all its processes,
#                          its /tmp and /dev/shm files, memfds (default 2G);
#                          tmpfs_size + shm_size must fit in it
#   ro_bind PATH [DEST]    show a host path read-only (must exist)
#   ro_bind_try PATH [DEST]  the same, skipped when PATH does not exist
#   symlink TARGET LINK    create the symlink LINK -> TARGET
#   env NAME=VALUE         set a variable (the rest of the line is VALUE)
#   rlimit NAME VALUE      as, fsize, core: a size; nproc, nofile: a count;
#                          cpu: seconds (CPU time per process); nproc is
#                          the command's own processes (and threads)
#   network none           the only choice: loopback only, no outside network
#
# Sizes are digits with an optional K, M, G or T (powers of 1024).  Paths
# are absolute, without "." or "..".  /, /root and /home (and anything
# below them) can never be bound; /workspace, /proc, /dev and /tmp are set
# up by the worker and cannot be mount destinations.  A missing rlimit line
# means the default shown below, never "unlimited".
#
# Fixed, whatever a profile says: every namespace unshared, no
# capabilities, no nested user namespaces, a new session, the sandbox dies
# with the worker, a seccomp filter (no ptrace, mount, unshare, setns,
# keyctl, bpf, TIOCSTI, ...), only fds 0-2, and an environment of PATH,
# HOME=/tmp, LANG=C.UTF-8 and TERM=dumb plus the env lines here.  The
# workspace's .git is always read-only.
#
# Where the host gives cgroups (v2 delegated to the service, or v1 when it
# runs as root), each command gets a memory cgroup of "memory" and a pids
# cgroup of "rlimit nproc".  Without them: /tmp and /dev/shm are still
# sized, memfd_create and SysV shm are refused, and RLIMIT_NPROC counts the
# sandbox's own processes only (as root it binds nothing: see doctor and
# docs/security.md).

workspace rw
network none
tmpfs_size 256M
shm_size 64M
memory 2G

# The system, read-only: /usr and the merged-/usr links, and a few files
# of /etc (not all of it: /etc/shadow, ssh host keys and the like stay out).
ro_bind /usr
symlink usr/bin /bin
symlink usr/sbin /sbin
symlink usr/lib /lib
ro_bind_try /usr/lib32 /lib32
symlink usr/lib64 /lib64
ro_bind_try /etc/alternatives
ro_bind_try /etc/ld.so.cache
ro_bind_try /etc/ld.so.conf
ro_bind_try /etc/ld.so.conf.d
ro_bind_try /etc/passwd
ro_bind_try /etc/group
ro_bind_try /etc/nsswitch.conf
ro_bind_try /etc/hosts
ro_bind_try /etc/host.conf
ro_bind_try /etc/localtime
ro_bind_try /etc/timezone
ro_bind_try /etc/os-release
ro_bind_try /etc/debian_version
ro_bind_try /etc/protocols
ro_bind_try /etc/services
ro_bind_try /etc/mime.types
ro_bind_try /etc/magic
ro_bind_try /etc/ssl
ro_bind_try /etc/ca-certificates
ro_bind_try /etc/gitconfig
ro_bind_try /etc/python3
ro_bind_try /etc/perl
ro_bind_try /etc/java-17-openjdk

env PATH=/usr/local/bin:/usr/bin:/bin

rlimit as 2G
rlimit nproc 256
rlimit fsize 256M
rlimit nofile 256
rlimit cpu 1200
rlimit core 0
