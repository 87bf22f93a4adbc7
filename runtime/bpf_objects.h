/* BPF objects compiled from bpf/NAME.bpf.c and embedded into the binary by the
 * Makefile (build/runtime/bpf_objects.c). */
#ifndef PM_BPF_OBJECTS_H
#define PM_BPF_OBJECTS_H

struct pm_bpf_object {
  const char *name;   /* "syscall" for bpf/syscall.bpf.c */
  const char *start;  /* ELF bytes */
  const char *end;
};

/// Terminated by an entry whose name is NULL.
extern const struct pm_bpf_object pm_bpf_objects[];

#endif
