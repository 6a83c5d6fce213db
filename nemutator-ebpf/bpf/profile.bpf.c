// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
// (The kernel only lets GPL-compatible programs call bpf_get_stackid.)
//
// nemutator stack sampler: a perf-event BPF program attached to the software
// CPU clock on every online CPU. On each tick it checks whether the running
// task belongs to the target (a set of tgids and/or a set of cgroup v2 ids),
// records its user and kernel stacks in a stack-trace map and counts the
// (tgid, user stack id, kernel stack id) triple.
//
// Compiled into the shipped bpf/profile.bpf.o: edit, then scripts/check-bpf.sh --update.
// No vmlinux.h / CO-RE: the program never reads kernel structures, it only
// calls helpers, so it loads unchanged on any kernel with perf-event programs.

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>

#define MAX_STACK_DEPTH 127

// Keep these in sync with src/bpf.rs.
#define STAT_MATCHED 0     // samples of the target
#define STAT_LOST 1        // samples that could not be counted (map full)
#define STAT_STACK_ERR 2   // stacks that could not be stored (collision, map full)
#define STAT_LEN 4

struct count_key {
	__u32 tgid;
	__s32 user_stack_id;
	__s32 kernel_stack_id;
	__u32 _pad;
};

struct config {
	__u32 filter_tgids;   // 1: match tasks whose tgid is in `target_tgids`
	__u32 filter_cgroups; // 1: match tasks whose cgroup id is in `target_cgroups`
};

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));
	__uint(max_entries, 16384);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct count_key);
	__type(value, __u64);
	__uint(max_entries, 40960);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 8192);
} target_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u8);
	__uint(max_entries, 1024);
} target_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct config);
	__uint(max_entries, 1);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STAT_LEN);
} stats SEC(".maps");

static __always_inline void bump_stat(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1; // per-CPU slot: no atomics needed
}

static __always_inline int is_target(__u32 tgid)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return 0;
	if (cfg->filter_tgids && bpf_map_lookup_elem(&target_tgids, &tgid))
		return 1;
	if (cfg->filter_cgroups) {
		__u64 cg = bpf_get_current_cgroup_id();
		if (bpf_map_lookup_elem(&target_cgroups, &cg))
			return 1;
	}
	return 0;
}

SEC("perf_event")
int nemutator_profile(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;

	if (tgid == 0 || !is_target(tgid))
		return 0;
	bump_stat(STAT_MATCHED);

	struct count_key key = {};
	key.tgid = tgid;
	key.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	key.kernel_stack_id = bpf_get_stackid(ctx, &stacks, 0);
	// -EFAULT means "no such stack" (e.g. no kernel stack for a tick taken in
	// user mode); anything else means the stack could not be stored.
	if ((key.user_stack_id < 0 && key.user_stack_id != -14) ||
	    (key.kernel_stack_id < 0 && key.kernel_stack_id != -14))
		bump_stat(STAT_STACK_ERR);

	__u64 *count = bpf_map_lookup_elem(&counts, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST) != 0) {
		// Another CPU may have inserted the key in between.
		count = bpf_map_lookup_elem(&counts, &key);
		if (count)
			__sync_fetch_and_add(count, 1);
		else
			bump_stat(STAT_LOST);
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
