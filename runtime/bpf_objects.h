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

/// The kernel BTF types the objects' CO-RE relocations use (bpftool gen
/// min_core_btf at build time; empty when that failed), and the fingerprint
/// of the kernel they were cut from (/proc/version, then the BTF's size).
extern const struct pm_bpf_object pm_min_core_btf;
extern const struct pm_bpf_object pm_min_core_id;

#endif
