// SPDX-License-Identifier: GPL-2.0
// Heron Linux sensor: CO-RE eBPF programs on BTF tracepoints only (sched_process_*, raw
// sys_enter/sys_exit) feeding one ring buffer. Tracepoints work where
// kprobes and fentry trampolines do not (kernels without CONFIG_KPROBES, hypervisor guests that
// refuse trampolines), at the cost of a syscall-level view (io_uring operations are not seen). Built by agent/sources/ebpf/Makefile (clang -target bpf + libbpf headers + a
// vmlinux.h from bpftool); loaded by agent/sources/ebpf/loader.py through libbpf.so.1.
// The record layout (struct event) is mirrored by agent/sources/ebpf/records.py.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define EV_EXEC 1
#define EV_FORK 2
#define EV_EXIT 3
#define EV_CONNECT 4
#define EV_ACCEPT 5
#define EV_BIND 6
#define EV_UDP_SEND 7
#define EV_DNS_SEND 8
#define EV_DNS_RECV 9
#define EV_FILE_CREATE 10
#define EV_FILE_CLOSE_WRITE 11
#define EV_FILE_UNLINK 12
#define EV_FILE_RENAME 13
#define EV_FILE_CHMOD 14
#define EV_FILE_CHOWN 15
#define EV_PTRACE 16
#define EV_MODULE 17
#define EV_BPF 18
#define EV_CRED 19
#define EV_MAX 20

#define DATA_SIZE 16384
#define PATH_END 4095
#define DNS_MAX 1024
#define AF_INET 2
#define AF_INET6 10
#define FMODE_WRITE 0x2
#define S_IFMT 00170000
#define S_IFREG 0100000
#define PTRACE_MODE_ATTACH 0x02
#define SIGNAL_GROUP_EXIT 0x00000004

#define F_EXE_DELETED 1
#define F_ARGS_TRUNC 2

struct hnet {
	u16 family;
	u16 proto;
	u16 sport;
	u16 dport;
	u8 saddr[16];
	u8 daddr[16];
};

struct event {
	u32 type;
	u32 pid;    // tgid
	u32 tid;
	u32 ppid;
	u64 ts;     // CLOCK_BOOTTIME ns
	u64 start;  // start_boottime of the thread-group leader (ns)
	u64 pstart;
	u32 seq;    // exec count - 1 since the fork (part of the process GUID)
	u32 pseq;
	u32 uid, gid, euid, egid;
	char comm[16];
	union {
		struct hnet net;
		u64 aux[5];
	};
	u32 flags;
	u16 len[4];
	u8 data[DATA_SIZE];
};

struct pinfo {
	u64 start;
	u32 count;
	u32 pad;
};

struct hconfig {
	u32 agent_tgid;
	u32 files;  // 1: file events on (prefix trie non-empty)
};

struct prefix_key {
	u32 prefixlen;
	u8 data[256];
};

struct pathbuf {
	char d[8192];
};

struct udp_flow {
	u32 tgid;
	u16 family;
	u16 port;
	u8 addr[16];
};

struct close_ctx {
	u64 file;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EV_MAX);
	__type(key, u32);
	__type(value, u64);
} losses SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct pathbuf);
} paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct prefix_key);
} keybuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct hconfig);
} hconfig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__type(key, struct prefix_key);
	__type(value, u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, struct pinfo);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct udp_flow);
	__type(value, u8);
} udp_flows SEC(".maps");


static __always_inline struct hconfig *get_config(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&hconfig, &zero);
}

static __always_inline bool is_agent(u32 tgid)
{
	struct hconfig *c = get_config();
	return c && c->agent_tgid == tgid;
}

static __always_inline u32 get_seq(u32 tgid, u64 start)
{
	struct pinfo *p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p || p->start != start || p->count == 0)
		return 0;
	return p->count - 1;
}

static __always_inline struct event *new_event(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline void fill_hdr(struct event *e, u32 type, struct task_struct *t)
{
	struct task_struct *parent = BPF_CORE_READ(t, real_parent);
	const struct cred *cred = BPF_CORE_READ(t, cred);

	e->type = type;
	e->pid = BPF_CORE_READ(t, tgid);
	e->tid = BPF_CORE_READ(t, pid);
	e->ppid = BPF_CORE_READ(parent, tgid);
	e->ts = bpf_ktime_get_boot_ns();
	e->start = BPF_CORE_READ(t, group_leader, start_boottime);
	e->pstart = BPF_CORE_READ(parent, group_leader, start_boottime);
	e->seq = get_seq(e->pid, e->start);
	e->pseq = get_seq(e->ppid, e->pstart);
	e->uid = BPF_CORE_READ(cred, uid.val);
	e->gid = BPF_CORE_READ(cred, gid.val);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	BPF_CORE_READ_STR_INTO(&e->comm, t, comm);
	e->flags = 0;
	e->len[0] = e->len[1] = e->len[2] = e->len[3] = 0;
	__builtin_memset(e->aux, 0, sizeof(e->aux));
}

static __always_inline struct event *current_event(u32 type)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct event *e;

	if (is_agent(t->tgid))
		return 0;
	e = new_event();
	if (e)
		fill_hdr(e, type, t);
	return e;
}

static __always_inline void submit(struct event *e, u32 dlen)
{
	u32 size = offsetof(struct event, data) + dlen;
	u32 type = e->type;

	if (size > sizeof(*e))
		size = sizeof(*e);
	if (bpf_ringbuf_output(&rb, e, size, 0)) {
		u64 *c = bpf_map_lookup_elem(&losses, &type);
		if (c)
			__sync_fetch_and_add(c, 1);
	}
}

struct walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct pathbuf *pb;
	int off;
};

// One step of the path walk (bpf_loop callback: verified once, whatever the depth).
static long walk_step(u32 i, struct walk *w)
{
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	struct pathbuf *pb = w->pb;

	if (!pb)
		return 1;
	if (dentry == root) {
		struct mount *pm = BPF_CORE_READ(mnt, mnt_parent);

		if (pm == mnt)
			return 1;  // the root of the mount tree
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = pm;
		w->vfsmnt = &pm->mnt;
		return 0;
	}
	struct qstr q = BPF_CORE_READ(dentry, d_name);
	u32 len = q.len & 255;
	int off = w->off - (int)len - 1;

	if (off < 0)
		return 1;
	bpf_probe_read_kernel(&pb->d[(off + 1) & 4095], len, q.name);
	pb->d[off & 4095] = '/';
	w->off = off;
	if (dentry == parent)
		return 1;  // root of an internal mount (memfd, pipe): its name is the path
	w->dentry = parent;
	return 0;
}

// Path of (dentry, vfsmount) written right to left into pb->d, ending at PATH_END; returns the
// offset of its first byte. Mount points are crossed up to the initial namespace's root.
static __always_inline int build_path(struct dentry *dentry, struct vfsmount *vfsmnt,
				      struct pathbuf *pb)
{
	struct walk w = {.dentry = dentry, .vfsmnt = vfsmnt, .pb = pb, .off = PATH_END};

	if (!pb)
		return PATH_END;
	w.mnt = container_of(vfsmnt, struct mount, mnt);
	pb->d[PATH_END] = 0;
	bpf_loop(64, walk_step, &w, 0);
	if (w.off == PATH_END) {
		w.off--;
		pb->d[w.off & 4095] = '/';
	}
	return w.off;
}

static __always_inline struct pathbuf *get_pathbuf(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&paths, &zero);
}

// Copies the path at pb->d[start..PATH_END) (NUL included) into e->data[doff..]; returns its length.
static __always_inline u32 put_path(struct event *e, u32 doff, struct pathbuf *pb, int start)
{
	u32 len = PATH_END + 1 - start;

	if (!pb)
		return 0;
	bpf_probe_read_kernel(&e->data[doff & 8191], len & 4095, &pb->d[start & 4095]);
	return len & 4095;
}

// True when the path at pb->d[start..] is under a configured prefix (LPM trie, in the kernel).
static __always_inline bool path_wanted(struct pathbuf *pb, int start)
{
	u32 zero = 0;
	struct prefix_key *k = bpf_map_lookup_elem(&keybuf, &zero);
	u32 len = PATH_END - start;

	if (!k || !pb)
		return false;
	if (len > 256)
		len = 256;
	k->prefixlen = len * 8;
	bpf_probe_read_kernel(k->data, sizeof(k->data), &pb->d[start & 4095]);
	return bpf_map_lookup_elem(&prefixes, k) != 0;
}

static __always_inline bool files_on(void)
{
	struct hconfig *c = get_config();
	return c && c->files;
}

// File type of descriptor fd (stdio of a new program): 0 none, 1 socket, 2 pipe, 3 character
// device (tty, /dev/null), 4 regular file, 5 other.
static __always_inline u64 fd_kind(struct task_struct *t, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	umode_t mode;

	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return 0;
	mode = BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT;
	if (mode == 0140000)
		return 1;
	if (mode == 0010000)
		return 2;
	if (mode == 0020000)
		return 3;
	if (mode == S_IFREG)
		return 4;
	return 5;
}

/* ---- processes ------------------------------------------------------------------------- */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	struct pinfo p = {};
	struct event *e;
	u32 tgid = child->tgid;

	if (child->pid != tgid)
		return 0;  // a thread
	p.start = child->start_boottime;
	bpf_map_update_elem(&procs, &tgid, &p, BPF_ANY);
	if (is_agent(parent->tgid))
		return 0;
	e = new_event();
	if (!e)
		return 0;
	fill_hdr(e, EV_FORK, child);
	submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *t, pid_t old_pid, struct linux_binprm *bprm)
{
	u32 tgid = t->tgid;
	u64 start = BPF_CORE_READ(t, group_leader, start_boottime);
	struct pinfo *p = bpf_map_lookup_elem(&procs, &tgid);
	struct pinfo np = {.start = start, .count = 2};  // predates the sensor: not the seeded GUID
	struct pathbuf *pb = get_pathbuf();
	struct event *e;
	u32 doff = 0, n;
	int off;

	if (p && p->start == start)
		np.count = p->count + 1;
	bpf_map_update_elem(&procs, &tgid, &np, BPF_ANY);
	if (is_agent(BPF_CORE_READ(t, real_parent, tgid)) && is_agent(tgid))
		return 0;
	e = new_event();
	if (!e || !pb)
		return 0;
	fill_hdr(e, EV_EXEC, t);

	struct file *f = BPF_CORE_READ(bprm, file);
	off = build_path(BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt), pb);
	n = put_path(e, doff, pb, off);
	e->len[0] = n;
	doff += n;
	if (BPF_CORE_READ(f, f_path.dentry, d_inode, __i_nlink) == 0)
		e->flags |= F_EXE_DELETED;

	e->aux[0] = fd_kind(t, 0) | fd_kind(t, 1) << 8 | fd_kind(t, 2) << 16;

	struct fs_struct *fs = BPF_CORE_READ(t, fs);
	off = build_path(BPF_CORE_READ(fs, pwd.dentry), BPF_CORE_READ(fs, pwd.mnt), pb);
	n = put_path(e, doff, pb, off);
	e->len[1] = n;
	doff += n;

	struct mm_struct *mm = BPF_CORE_READ(t, mm);
	u64 as = BPF_CORE_READ(mm, arg_start), ae = BPF_CORE_READ(mm, arg_end);
	u64 alen = ae > as ? ae - as : 0;
	if (alen > 4095) {
		alen = 4095;
		e->flags |= F_ARGS_TRUNC;
	}
	if (bpf_probe_read_user(&e->data[doff & 8191], alen & 4095, (void *)as) == 0) {
		e->len[2] = alen & 4095;
		doff += alen & 4095;
	}
	const char *fn = BPF_CORE_READ(bprm, filename);
	long r = bpf_probe_read_kernel_str(&e->data[doff & 8191], 1024, fn);
	if (r > 0) {
		e->len[3] = r;
		doff += r;
	}
	submit(e, doff);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *t)
{
	u32 tgid = t->tgid;
	struct signal_struct *sig = t->signal;
	struct event *e;

	if (BPF_CORE_READ(sig, live.counter) != 0)
		return 0;  // other threads still run: the process is not gone
	if (!is_agent(tgid)) {
		e = new_event();
		if (e) {
			fill_hdr(e, EV_EXIT, t);
			if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
				e->aux[0] = (u32)BPF_CORE_READ(sig, group_exit_code);
			else
				e->aux[0] = (u32)BPF_CORE_READ(t, exit_code);
			submit(e, 0);
		}
	}
	bpf_map_delete_elem(&procs, &tgid);
	return 0;
}

/* ---- syscalls (x86_64 numbers) --------------------------------------------------------- */

#define NR_read 0
#define NR_close 3
#define NR_writev 20
#define NR_connect 42
#define NR_accept 43
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_bind 49
#define NR_rename 82
#define NR_creat 85
#define NR_unlink 87
#define NR_chmod 90
#define NR_fchmod 91
#define NR_chown 92
#define NR_fchown 93
#define NR_lchown 94
#define NR_ptrace 101
#define NR_setuid 105
#define NR_setgid 106
#define NR_setreuid 113
#define NR_setregid 114
#define NR_setresuid 117
#define NR_setresgid 119
#define NR_init_module 175
#define NR_open 2
#define NR_openat 257
#define NR_unlinkat 263
#define NR_renameat 264
#define NR_fchownat 260
#define NR_fchmodat 268
#define NR_accept4 288
#define NR_recvmmsg 299
#define NR_sendmmsg 307
#define NR_finit_module 313
#define NR_renameat2 316
#define NR_bpf 321
#define NR_openat2 437
#define NR_fchmodat2 452

#define AT_FDCWD -100
#define EINPROGRESS 115
#define FMODE_CREATED_BIT (1 << 20)
#define BPF_PROG_LOAD_CMD 5

// Linux < 6.13 counts file references in f_count (CO-RE picks the field that exists).
struct file___old {
	atomic_long_t f_count;
} __attribute__((preserve_access_index));

static __always_inline long file_refs(struct file *f)
{
	if (bpf_core_field_exists(f->f_ref))
		return BPF_CORE_READ(f, f_ref.refcnt.counter) + 1;  // file_ref_t: 0 = one reference
	return BPF_CORE_READ((struct file___old *)f, f_count.counter);
}

static __always_inline struct file *fd_file(struct task_struct *t, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xfffff]);
	return f;
}

static __always_inline struct sock *fd_sock(struct task_struct *t, long fd)
{
	struct file *f = fd_file(t, fd);
	umode_t mode;

	if (!f)
		return 0;
	mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != 0140000)  // S_IFSOCK
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

static __always_inline void fill_sock(struct event *e, struct sock *sk)
{
	u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	e->net.family = family;
	e->net.proto = BPF_CORE_READ(sk, sk_protocol);
	e->net.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->net.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		BPF_CORE_READ_INTO(&e->net.saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&e->net.daddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&e->net.saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->net.daddr, sk, __sk_common.skc_v6_daddr);
	}
}

static __noinline int emit_sock(struct sock *sk, u32 type)
{
	struct event *e;
	u16 family;

	if (!sk)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	e = current_event(type);
	if (!e)
		return 0;
	fill_sock(e, sk);
	submit(e, 0);
	return 0;
}

// Destination of a user sockaddr (sendto/sendmsg) into e->net.daddr / dport.
static __always_inline void user_dest(struct event *e, void *uaddr)
{
	u16 family = 0;

	if (!uaddr || bpf_probe_read_user(&family, sizeof(family), uaddr))
		return;
	if (family == AF_INET) {
		struct sockaddr_in sin = {};
		bpf_probe_read_user(&sin, sizeof(sin), uaddr);
		e->net.dport = bpf_ntohs(sin.sin_port);
		__builtin_memset(e->net.daddr, 0, 16);
		__builtin_memcpy(e->net.daddr, &sin.sin_addr, 4);
		e->net.family = AF_INET;
	} else if (family == AF_INET6) {
		struct sockaddr_in6 sin6 = {};
		bpf_probe_read_user(&sin6, sizeof(sin6), uaddr);
		e->net.dport = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(e->net.daddr, &sin6.sin6_addr, 16);
		e->net.family = AF_INET6;
	}
}

// One datagram / stream write by the current process: DNS payloads (port 53) are copied, the
// first datagram of an unconnected UDP flow is reported as a connection.
static __noinline int net_send(struct sock *sk, void *uaddr, void *buf, u64 len)
{
	struct event *e;
	u16 proto;

	if (!sk)
		return 0;
	e = current_event(EV_DNS_SEND);
	if (!e)
		return 0;
	fill_sock(e, sk);
	if (e->net.family != AF_INET && e->net.family != AF_INET6)
		return 0;
	proto = e->net.proto;
	if (uaddr && proto == IPPROTO_UDP)
		user_dest(e, uaddr);
	if (e->net.dport != 53) {
		if (!uaddr || proto != IPPROTO_UDP)
			return 0;
		struct udp_flow k = {.tgid = e->pid, .family = e->net.family, .port = e->net.dport};
		u8 one = 1;
		__builtin_memcpy(k.addr, e->net.daddr, 16);
		if (bpf_map_lookup_elem(&udp_flows, &k))
			return 0;
		bpf_map_update_elem(&udp_flows, &k, &one, BPF_ANY);
		e->type = EV_UDP_SEND;
		submit(e, 0);
		return 0;
	}
	u32 n = len > DNS_MAX ? DNS_MAX : len;
	asm volatile("%[n] &= 2047" : [n] "+r"(n));
	if (bpf_probe_read_user(e->data, n, buf) != 0)
		return 0;
	e->len[0] = n;
	submit(e, n);
	return 0;
}

// A read from a socket whose peer is port 53: the DNS answer (bytes already in user memory).
static __noinline int net_recv(struct sock *sk, void *uaddr, void *buf, u64 len)
{
	struct event *e;

	if (!sk || len < 12)
		return 0;
	e = current_event(EV_DNS_RECV);
	if (!e)
		return 0;
	fill_sock(e, sk);
	if (e->net.family != AF_INET && e->net.family != AF_INET6)
		return 0;
	if (uaddr && e->net.proto == IPPROTO_UDP && e->net.dport != 53)
		user_dest(e, uaddr);
	if (e->net.dport != 53)
		return 0;
	u32 n = len > DNS_MAX ? DNS_MAX : len;
	asm volatile("%[n] &= 2047" : [n] "+r"(n));
	if (bpf_probe_read_user(e->data, n, buf) != 0)
		return 0;
	e->len[0] = n;
	submit(e, n);
	return 0;
}

static __always_inline int recv_msghdr(struct sock *sk, struct user_msghdr *um, u64 len)
{
	struct user_msghdr m = {};
	struct iovec v = {};

	if (bpf_probe_read_user(&m, sizeof(m), um))
		return 0;
	if (m.msg_iovlen < 1 || bpf_probe_read_user(&v, sizeof(v), m.msg_iov))
		return 0;
	return net_recv(sk, m.msg_name, v.iov_base, len < v.iov_len ? len : v.iov_len);
}

static __always_inline int send_msghdr(struct sock *sk, struct user_msghdr *um)
{
	struct user_msghdr m = {};
	struct iovec v = {};

	if (bpf_probe_read_user(&m, sizeof(m), um))
		return 0;
	if (m.msg_iovlen < 1 || bpf_probe_read_user(&v, sizeof(v), m.msg_iov))
		return 0;
	return net_send(sk, m.msg_name, v.iov_base, v.iov_len);
}

/* Path of a user path argument: absolute, or relative to dirfd / the cwd. Written into
 * e->data[doff..] without normalisation ("..", "." are resolved in user space); returns the
 * length including the NUL, 0 when unreadable. */
static __noinline u32 user_path(struct event *e, u32 doff, long dfd, const char *upath)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct pathbuf *pb = get_pathbuf();
	char first = 0;
	u32 n = 0;
	long r;

	if (!pb || bpf_probe_read_user(&first, 1, upath))
		return 0;
	if (first != '/') {
		struct dentry *d;
		struct vfsmount *m;
		int off;

		if (dfd == AT_FDCWD) {
			d = BPF_CORE_READ(t, fs, pwd.dentry);
			m = BPF_CORE_READ(t, fs, pwd.mnt);
		} else {
			struct file *f = fd_file(t, dfd);
			if (!f)
				return 0;
			d = BPF_CORE_READ(f, f_path.dentry);
			m = BPF_CORE_READ(f, f_path.mnt);
		}
		off = build_path(d, m, pb);
		n = put_path(e, doff, pb, off);
		if (n == 0)
			return 0;
		n -= 1;  // drop the NUL: the relative part follows
		e->data[(doff + n) & 16383] = '/';
		n += 1;
	}
	r = bpf_probe_read_user_str(&e->data[(doff + n) & 8191], 4096, upath);
	if (r <= 0)
		return 0;
	return (n + r) & 8191;
}

// True when e->data[doff..] starts under a configured prefix.
static __always_inline bool data_wanted(struct event *e, u32 doff, u32 len)
{
	u32 zero = 0;
	struct prefix_key *k = bpf_map_lookup_elem(&keybuf, &zero);

	if (!k || len == 0)
		return false;
	len -= 1;
	if (len > 256)
		len = 256;
	k->prefixlen = len * 8;
	bpf_probe_read_kernel(k->data, sizeof(k->data), &e->data[doff & 8191]);
	return bpf_map_lookup_elem(&prefixes, k) != 0;
}

static __noinline int path_event(u32 type, long dfd, const char *upath, u64 a0, u64 a1)
{
	struct event *e;
	u32 n;

	if (!files_on())
		return 0;
	e = current_event(type);
	if (!e)
		return 0;
	n = user_path(e, 0, dfd, upath);
	if (!data_wanted(e, 0, n))
		return 0;
	e->len[0] = n;
	e->aux[0] = a0;
	e->aux[1] = a1;
	submit(e, n);
	return 0;
}

static __noinline int file_event(u32 type, struct file *f, u64 a0, u64 a1)
{
	struct pathbuf *pb;
	struct event *e;
	int off;
	u32 n;

	if (!f || !files_on())
		return 0;
	pb = get_pathbuf();
	if (!pb)
		return 0;
	off = build_path(BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt), pb);
	if (!path_wanted(pb, off))
		return 0;
	e = current_event(type);
	if (!e)
		return 0;
	n = put_path(e, 0, pb, off);
	e->len[0] = n;
	e->aux[0] = a0;
	e->aux[1] = a1;
	submit(e, n);
	return 0;
}

static __noinline int rename_event(long odfd, const char *oldp, long ndfd, const char *newp,
				   u64 flags)
{
	struct event *e;
	u32 n, m;

	if (!files_on())
		return 0;
	e = current_event(EV_FILE_RENAME);
	if (!e)
		return 0;
	n = user_path(e, 0, odfd, oldp);
	if (n == 0)
		return 0;
	m = user_path(e, n, ndfd, newp);
	if (!data_wanted(e, 0, n) && !data_wanted(e, n, m))
		return 0;
	e->len[0] = n;
	e->len[1] = m;
	e->aux[0] = flags;
	submit(e, n + m);
	return 0;
}

static __noinline int module_event(long fd, u64 finit, long ret)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct event *e = current_event(EV_MODULE);
	struct pathbuf *pb;
	u32 n = 0;

	if (!e)
		return 0;
	e->aux[0] = finit;
	e->aux[1] = ret;
	if (finit) {
		struct file *f = fd_file(t, fd);
		pb = get_pathbuf();
		if (f && pb) {
			int off = build_path(BPF_CORE_READ(f, f_path.dentry), BPF_CORE_READ(f, f_path.mnt), pb);
			n = put_path(e, 0, pb, off);
		}
	}
	e->len[0] = n;
	submit(e, n);
	return 0;
}

static __noinline int simple_event(u32 type, u64 a0, u64 a1, u64 a2, u64 a3)
{
	struct event *e = current_event(type);

	if (!e)
		return 0;
	e->aux[0] = a0;
	e->aux[1] = a1;
	e->aux[2] = a2;
	e->aux[3] = a3;
	submit(e, 0);
	return 0;
}

static __noinline int bpf_event(void *uattr)
{
	struct event *e = current_event(EV_BPF);
	u32 type = 0;

	if (!e)
		return 0;
	bpf_probe_read_user(&type, sizeof(type), uattr);
	e->aux[0] = type;
	bpf_probe_read_user(e->data, 16, uattr + 48);  // union bpf_attr.prog_name (stable ABI)
	e->len[0] = 16;
	submit(e, 16);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	// close: the file is still reachable through its fd only before the call
	if (id == NR_close && files_on()) {
		struct task_struct *t = bpf_get_current_task_btf();
		struct file *f = fd_file(t, PT_REGS_PARM1_CORE(regs));
		umode_t mode;

		if (!f || !(BPF_CORE_READ(f, f_mode) & FMODE_WRITE))
			return 0;
		mode = BPF_CORE_READ(f, f_inode, i_mode);
		if ((mode & S_IFMT) != S_IFREG)
			return 0;
		if (file_refs(f) > 1)
			return 0;  // other descriptors keep it open: not the last close
		return file_event(EV_FILE_CLOSE_WRITE, f, 0, 0);
	}
	// unlink/rename: resolve the names while they still exist; reported at exit when ok
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	long id = BPF_CORE_READ(regs, orig_ax);
	struct task_struct *t;
	long a0, a1, a2, a3, a4;

	switch (id) {
	case NR_read: case NR_recvfrom: case NR_recvmsg: case NR_recvmmsg:
	case NR_connect: case NR_accept: case NR_accept4: case NR_bind: case NR_sendto:
	case NR_sendmsg: case NR_sendmmsg: case NR_writev: case NR_open: case NR_openat:
	case NR_openat2: case NR_creat: case NR_unlink: case NR_unlinkat: case NR_rename:
	case NR_renameat: case NR_renameat2: case NR_chmod: case NR_fchmod: case NR_fchmodat:
	case NR_fchmodat2: case NR_chown: case NR_fchown: case NR_lchown: case NR_fchownat:
	case NR_ptrace: case NR_init_module: case NR_finit_module: case NR_bpf: case NR_setuid:
	case NR_setgid: case NR_setreuid: case NR_setregid: case NR_setresuid: case NR_setresgid:
		break;
	default:
		return 0;
	}
	t = bpf_get_current_task_btf();
	a0 = PT_REGS_PARM1_CORE_SYSCALL(regs);
	a1 = PT_REGS_PARM2_CORE_SYSCALL(regs);
	a2 = PT_REGS_PARM3_CORE_SYSCALL(regs);
	a3 = PT_REGS_PARM4_CORE_SYSCALL(regs);
	a4 = PT_REGS_PARM5_CORE_SYSCALL(regs);

	switch (id) {
	case NR_read:
		// TCP DNS answers (glibc reads the length, then the message); cheap when not a socket
		if (ret < 12)
			return 0;
		return net_recv(fd_sock(t, a0), 0, (void *)a1, ret);
	case NR_recvfrom:
		return ret > 0 ? net_recv(fd_sock(t, a0), (void *)a4, (void *)a1, ret) : 0;
	case NR_recvmsg:
		return ret > 0 ? recv_msghdr(fd_sock(t, a0), (void *)a1, ret) : 0;
	case NR_recvmmsg:
		if (ret > 0) {
			struct sock *sk = fd_sock(t, a0);
			struct mmsghdr *mm = (void *)a1;
			u32 n0 = 0, n1 = 0;
			bpf_probe_read_user(&n0, sizeof(n0), &mm[0].msg_len);
			recv_msghdr(sk, (void *)&mm[0].msg_hdr, n0);
			if (ret > 1) {
				bpf_probe_read_user(&n1, sizeof(n1), &mm[1].msg_len);
				recv_msghdr(sk, (void *)&mm[1].msg_hdr, n1);
			}
		}
		return 0;
	case NR_connect:
		if (ret == 0 || ret == -EINPROGRESS)
			return emit_sock(fd_sock(t, a0), EV_CONNECT);
		return 0;
	case NR_accept:
	case NR_accept4:
		return ret >= 0 ? emit_sock(fd_sock(t, ret), EV_ACCEPT) : 0;
	case NR_bind:
		return ret == 0 ? emit_sock(fd_sock(t, a0), EV_BIND) : 0;
	case NR_sendto:
		return ret > 0 ? net_send(fd_sock(t, a0), (void *)a4, (void *)a1, ret) : 0;
	case NR_sendmsg:
		return ret > 0 ? send_msghdr(fd_sock(t, a0), (void *)a1) : 0;
	case NR_sendmmsg:
		if (ret > 0) {
			struct sock *sk = fd_sock(t, a0);
			struct mmsghdr *mm = (void *)a1;
			send_msghdr(sk, (void *)&mm[0].msg_hdr);
			if (ret > 1)
				send_msghdr(sk, (void *)&mm[1].msg_hdr);
		}
		return 0;
	case NR_writev:
		if (ret > 0) {
			struct sock *sk = fd_sock(t, a0);
			struct iovec v[2] = {};
			if (!sk || BPF_CORE_READ(sk, __sk_common.skc_dport) != bpf_htons(53))
				return 0;
			// TCP DNS: 2-byte length then the message, often in two iovecs
			bpf_probe_read_user(&v, sizeof(v), (void *)a1);
			if (a2 > 1 && v[0].iov_len == 2)
				return net_send(sk, 0, v[1].iov_base, v[1].iov_len);
			return net_send(sk, 0, v[0].iov_base, v[0].iov_len);
		}
		return 0;
	case NR_open: case NR_openat: case NR_openat2: case NR_creat:
		if (ret >= 0) {
			struct file *f = fd_file(t, ret);
			if (f && (BPF_CORE_READ(f, f_mode) & FMODE_CREATED_BIT))
				return file_event(EV_FILE_CREATE, f, BPF_CORE_READ(f, f_inode, i_mode), 0);
		}
		return 0;
	case NR_unlink:
		return ret == 0 ? path_event(EV_FILE_UNLINK, AT_FDCWD, (void *)a0, 0, 0) : 0;
	case NR_unlinkat:
		return ret == 0 ? path_event(EV_FILE_UNLINK, a0, (void *)a1, a2, 0) : 0;
	case NR_rename:
		return ret == 0 ? rename_event(AT_FDCWD, (void *)a0, AT_FDCWD, (void *)a1, 0) : 0;
	case NR_renameat:
	case NR_renameat2:
		return ret == 0 ? rename_event(a0, (void *)a1, a2, (void *)a3, id == NR_renameat2 ? a4 : 0) : 0;
	case NR_chmod:
		return ret == 0 ? path_event(EV_FILE_CHMOD, AT_FDCWD, (void *)a0, a1, 0) : 0;
	case NR_fchmodat: case NR_fchmodat2:
		return ret == 0 ? path_event(EV_FILE_CHMOD, a0, (void *)a1, a2, 0) : 0;
	case NR_fchmod:
		return ret == 0 ? file_event(EV_FILE_CHMOD, fd_file(t, a0), a1, 0) : 0;
	case NR_chown: case NR_lchown:
		return ret == 0 ? path_event(EV_FILE_CHOWN, AT_FDCWD, (void *)a0, a1, a2) : 0;
	case NR_fchownat:
		return ret == 0 ? path_event(EV_FILE_CHOWN, a0, (void *)a1, a2, a3) : 0;
	case NR_fchown:
		return ret == 0 ? file_event(EV_FILE_CHOWN, fd_file(t, a0), a1, a2) : 0;
	case NR_ptrace:
		// PTRACE_ATTACH, PTRACE_SEIZE, PTRACE_POKETEXT/POKEDATA/POKEUSER
		if (ret == 0 && (a0 == 16 || a0 == 0x4206 || (a0 >= 4 && a0 <= 6)))
			return simple_event(EV_PTRACE, a1, a0, 0, 0);
		return 0;
	case NR_init_module:
		return module_event(-1, 0, ret);
	case NR_finit_module:
		return module_event(a0, 1, ret);
	case NR_bpf:
		return (a0 == BPF_PROG_LOAD_CMD && ret >= 0) ? bpf_event((void *)a1) : 0;
	default:  // set*id
		return ret == 0 ? simple_event(EV_CRED, id, a0, a1, a2) : 0;
	}
}
