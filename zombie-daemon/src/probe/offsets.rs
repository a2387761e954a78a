//! Kernel struct member offsets, read from the running kernel's BTF.
//!
//! Aya's Rust eBPF side has no CO-RE relocations, so the programs read kernel memory at
//! offsets userspace computes here and passes in the `OFFSETS` global. Nothing of the build
//! machine's layouts is compiled in.

use std::path::Path;

use btf_rs::{Btf, Type};
use zombie_ebpf::Offsets;

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(
        "cannot read kernel BTF at {path}: {source}. The kernel must be built with \
         CONFIG_DEBUG_INFO_BTF=y (Linux 5.8+ distributions ship it); in a container, mount the \
         host's /sys/kernel/btf"
    )]
    Read {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("kernel BTF: {0}")]
    Btf(#[from] btf_rs::Error),
    #[error("kernel BTF has no tracepoint {0} (needs Linux 5.5+ with BTF)")]
    NoTracepoint(String),
}

pub const TRACEPOINTS: [&str; 5] = [
    "sched_process_exit",
    "sched_process_free",
    "sched_process_wait",
    "sched_process_fork",
    "sched_process_exec",
];

struct Resolver {
    btf: Btf,
}

impl Resolver {
    fn struct_type(&self, name: &str) -> Result<btf_rs::Struct, OffsetError> {
        for ty in self.btf.resolve_types_by_name(name).unwrap_or_default() {
            match ty {
                Type::Struct(s) if !s.members.is_empty() => return Ok(s),
                _ => continue,
            }
        }
        Err(OffsetError::NoStruct(name.into()))
    }

    /// Byte offset of `member` in `strukt`, looking into anonymous structs and unions (the
    /// kernel wraps members in them, e.g. `randomized_struct_fields_start`).
    fn offset(&self, strukt: &str, member: &str) -> Result<u32, OffsetError> {
        let s = self.struct_type(strukt)?;
        self.find_member(&s.members, member)?
            .map(|bits| bits / 8)
            .ok_or_else(|| OffsetError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            })
    }

    fn find_member(
        &self,
        members: &[btf_rs::Member],
        want: &str,
    ) -> Result<Option<u32>, OffsetError> {
        for m in members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            if name == want {
                return Ok(Some(m.bit_offset()));
            }
            if name.is_empty() {
                let inner = match self.btf.resolve_chained_type(m)? {
                    Type::Struct(s) => s.members,
                    Type::Union(u) => u.members,
                    _ => continue,
                };
                if let Some(off) = self.find_member(&inner, want)? {
                    return Ok(Some(m.bit_offset() + off));
                }
            }
        }
        Ok(None)
    }

    fn size_of(&self, strukt: &str) -> Result<u32, OffsetError> {
        Ok(self.struct_type(strukt)?.size() as u32)
    }

    /// Number of arguments the tracepoint passes to a tp_btf program (without the leading
    /// `void *__data`), from the `btf_trace_<name>` typedef's function prototype.
    fn tracepoint_args(&self, name: &str) -> Result<usize, OffsetError> {
        let typedef = format!("btf_trace_{name}");
        let ty = self
            .btf
            .resolve_types_by_name(&typedef)
            .ok()
            .and_then(|v| v.into_iter().next())
            .ok_or_else(|| OffsetError::NoTracepoint(name.into()))?;
        let mut ty = ty;
        // typedef -> pointer -> func_proto
        for _ in 0..4 {
            ty = match ty {
                Type::FuncProto(p) => return Ok(p.parameters.len().saturating_sub(1)),
                other => match other.as_btf_type() {
                    Some(t) => self.btf.resolve_chained_type(t)?,
                    None => break,
                },
            };
        }
        Err(OffsetError::NoTracepoint(name.into()))
    }
}

/// Reads every offset the programs need from the BTF file at `path`
/// (normally /sys/kernel/btf/vmlinux).
pub fn from_btf(path: &Path) -> Result<Offsets, OffsetError> {
    let btf = Btf::from_file(path).map_err(|source| OffsetError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let r = Resolver { btf };
    for tp in TRACEPOINTS {
        r.tracepoint_args(tp)?;
    }

    let task = "task_struct";
    // action[SIGCHLD - 1].sa.{sa_handler,sa_flags}
    let sigchld = libc::SIGCHLD as u32;
    let k_sigaction_size = r.size_of("k_sigaction")?;
    let action = r.offset("sighand_struct", "action")? + (sigchld - 1) * k_sigaction_size;
    let sa = action + r.offset("k_sigaction", "sa")?;

    let offsets = Offsets {
        ready: 1,
        task_pid: r.offset(task, "pid")?,
        task_tgid: r.offset(task, "tgid")?,
        task_real_parent: r.offset(task, "real_parent")?,
        task_group_leader: r.offset(task, "group_leader")?,
        task_signal: r.offset(task, "signal")?,
        task_sighand: r.offset(task, "sighand")?,
        task_exit_code: r.offset(task, "exit_code")?,
        task_exit_signal: r.offset(task, "exit_signal")?,
        task_ptrace: r.offset(task, "ptrace")?,
        task_start_boottime: r.offset(task, "start_boottime")?,
        task_comm: r.offset(task, "comm")?,
        signal_live: r.offset("signal_struct", "live")?,
        signal_flags: r.offset("signal_struct", "flags")?,
        signal_group_exit_code: r.offset("signal_struct", "group_exit_code")?,
        sighand_sigchld_handler: sa + r.offset("sigaction", "sa_handler")?,
        sighand_sigchld_flags: sa + r.offset("sigaction", "sa_flags")?,
        pid_numbers_nr: r.offset("pid", "numbers")? + r.offset("upid", "nr")?,
        sa_nocldwait: libc::SA_NOCLDWAIT as u32,
        sigchld,
        _unused_wait_ns: 0,
        wait_dedup_jiffies: 0,
        exit_has_group_dead: u32::from(r.tracepoint_args("sched_process_exit")? >= 2),
        _pad: 0,
        fault_drop_free_comm: [0; 2],
        task_thread_pid: r.offset(task, "thread_pid")?,
        pid_level: r.offset("pid", "level")?,
        upid_size: r.size_of("upid")?,
        task_mm: r.offset(task, "mm")?,
        mm_arg_start: r.offset("mm_struct", "arg_start")?,
        mm_arg_end: r.offset("mm_struct", "arg_end")?,
        direct_reads: 0,
        task_cgroups: r.offset(task, "cgroups")?,
        css_set_dfl_cgrp: r.offset("css_set", "dfl_cgrp")?,
        cgroup_kn: r.offset("cgroup", "kn")?,
        kernfs_node_id: r.offset("kernfs_node", "id")?,
        _pad2: 0,
    };
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's kernel: every offset must be found and plausible.
    #[test]
    fn offsets_from_the_running_kernel() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            panic!("this test needs kernel BTF at /sys/kernel/btf/vmlinux");
        }
        let o = from_btf(path).unwrap();
        assert_eq!(o.ready, 1);
        assert!(o.task_tgid > o.task_pid - 1 && o.task_tgid == o.task_pid + 4);
        assert!(o.task_comm > 0 && o.task_start_boottime > 0);
        assert!(o.sighand_sigchld_flags == o.sighand_sigchld_handler + 8);
        // struct upid { int nr; struct pid_namespace *ns; } on 64-bit.
        assert_eq!(o.upid_size, 16);
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8);
        assert!(o.task_thread_pid > 0 && o.task_mm > 0);
        assert!(o.task_cgroups > 0 && o.cgroup_kn > 0);
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let err = from_btf(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
