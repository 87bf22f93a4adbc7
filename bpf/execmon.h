/* Shared between bpf/execmon.bpf.c and user space (lib/perf_manual/runbooks/execmon_tracer.lua). */
#ifndef PM_EXECMON_H
#define PM_EXECMON_H

#include "common/pm_types.h"

#define PM_EXECMON_EXEC 1
#define PM_EXECMON_OPEN 2
#define PM_EXECMON_CONNECT 3

#define PM_EXECMON_PATH 256
#define PM_EXECMON_ARGS 256
#define PM_EXECMON_KEY 128 /* bytes of a path the watched-prefix trie compares */

struct execmon_event {
  __u64 ts_ns;
  __u32 kind;
  __u32 pid;     /* process (tgid) */
  __u32 tid;
  __u32 ppid;    /* parent process */
  __u32 uid;
  __s32 flags;   /* open: flags */
  __u16 family;  /* connect: AF_INET / AF_INET6 */
  __u16 dport;
  __u16 sport;
  __u16 args_len; /* exec: bytes of args (NUL-separated) */
  __u8 daddr[16];
  char comm[16];
  char pcomm[16]; /* parent's comm */
  char path[PM_EXECMON_PATH]; /* exec: the program; open: the path */
  char args[PM_EXECMON_ARGS];
};

/* LPM trie key: the watched path prefixes */
struct execmon_prefix {
  __u32 prefixlen; /* bits */
  char data[PM_EXECMON_KEY];
};

#endif
