/* Processes seen for the first time, for user space to read their
 * mappings while they live (so the frames of one that exits before the
 * maps are read stay named): `seen` remembers every process, `fresh` holds
 * those user space has not looked at yet (it reads and clears it every
 * ~100 ms). Used by the objects that take user stacks (profile, probe). */
#ifndef PM_FRESH_BPF_H
#define PM_FRESH_BPF_H

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, __u8);
} seen SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32);
  __type(value, __u64);
} fresh SEC(".maps");

/* Notes tgid in `fresh` the first time it is seen. */
static __always_inline void pm_note_fresh(__u32 tgid)
{
  if (!bpf_map_lookup_elem(&seen, &tgid)) {
    __u8 yes = 1;
    __u64 now = bpf_ktime_get_ns();
    bpf_map_update_elem(&seen, &tgid, &yes, BPF_ANY);
    bpf_map_update_elem(&fresh, &tgid, &now, BPF_NOEXIST);
  }
}

#endif
