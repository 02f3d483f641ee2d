//! Kernel confinement of a worker process, applied by the worker to itself before it takes any run: nothing inherited, no new privileges, rlimits, Landlock with no filesystem access, and a seccomp filter that refuses sockets, exec, new processes and signals to others. It must fail closed: any part the kernel refuses is an error naming that part, never a silent downgrade.

#![allow(unsafe_code)]

use std::collections::BTreeMap;

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetStatus,
    Scope, ABI,
};
use rustix::process::{Resource, Rlimit};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use serde::{Deserialize, Serialize};

/// What was put in force, as the worker reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confinement {
    /// `fully_enforced` or `partially_enforced` (the filesystem part is
    /// always enforced; newer parts such as network or signal scoping may be
    /// missing on an older kernel and are then covered by seccomp alone).
    pub landlock: String,
    pub seccomp: bool,
    pub no_new_privs: bool,
    pub rlimits: bool,
}

/// Which part the kernel refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("closing inherited file descriptors failed: {0}")]
    Descriptors(String),
    #[error("prctl(PR_SET_NO_NEW_PRIVS) was refused: {0}")]
    NoNewPrivs(String),
    #[error("dropping capabilities was refused: {0}")]
    Capabilities(String),
    #[error("setting rlimit {0} was refused: {1}")]
    Rlimit(&'static str, String),
    #[error("Landlock is not available or refused the ruleset (needs Linux 5.13+ with Landlock enabled, and a container profile that allows the landlock_* syscalls): {0}")]
    Landlock(String),
    #[error("the seccomp filter could not be built or installed (a container profile may forbid seccomp(2)): {0}")]
    Seccomp(String),
}

/// Limits every worker gets. Memory is bounded per run by the engine's
/// allocator; the address-space limit is a backstop for the process.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProcessLimits {
    pub address_space_bytes: u64,
    pub open_files: u64,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        ProcessLimits {
            address_space_bytes: 64 << 30,
            open_files: 64,
        }
    }
}

/// The worker's channel: its own descriptors for the pipe from the server
/// (stdin) and the pipe to it (stdout). Stdin and stdout then point at
/// stderr (the null device), so that no stray print writes into the channel.
pub(crate) fn take_channel() -> Option<(std::fs::File, std::fs::File)> {
    use std::os::fd::AsFd;
    let rd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let wr = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    // SAFETY: dup2 onto descriptors 0 and 1, whose channel ends were
    // duplicated above; no Rust object owns 0 or 1 as a file.
    let (a, b) = unsafe { (libc::dup2(2, 0), libc::dup2(2, 1)) };
    if a < 0 || b < 0 {
        return None;
    }
    Some((std::fs::File::from(rd), std::fs::File::from(wr)))
}

/// Closes every descriptor above stderr: a worker holds only its channel
/// (stdin and stdout) and stderr, whatever the server had open when it
/// started it.
pub(crate) fn close_inherited() -> Result<(), ConfineError> {
    // SAFETY: close_range on descriptors this process does not use; no Rust
    // object owns any of them at this point (the worker has not opened any).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(ConfineError::Descriptors(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok(())
}

/// Applies everything, in the order the kernel needs: no_new_privs first
/// (Landlock and an unprivileged seccomp filter both require it). `setup`
/// runs once inherited descriptors are closed and the rlimits set, before
/// Landlock and the filter: it makes what the worker needs that the filter
/// would refuse later (its runtime's socket pair, connected only to itself,
/// beside its epoll instance and wake-up descriptor).
pub(crate) fn apply<T>(
    limits: ProcessLimits,
    setup: impl FnOnce() -> T,
) -> Result<(Confinement, T), ConfineError> {
    close_inherited()?;
    rustix::thread::set_no_new_privs(true).map_err(|e| ConfineError::NoNewPrivs(e.to_string()))?;
    // Not dumpable: no other process of the same user may ptrace it or read
    // its memory through /proc.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| ConfineError::NoNewPrivs(e.to_string()))?;
    // A worker never outlives the thread that started it.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| ConfineError::NoNewPrivs(e.to_string()))?;
    let set = |name: &'static str, r: Resource, v: u64| {
        rustix::process::setrlimit(
            r,
            Rlimit {
                current: Some(v),
                maximum: Some(v),
            },
        )
        .map_err(|e| ConfineError::Rlimit(name, e.to_string()))
    };
    set("RLIMIT_CORE", Resource::Core, 0)?;
    set("RLIMIT_FSIZE", Resource::Fsize, 0)?;
    set("RLIMIT_NOFILE", Resource::Nofile, limits.open_files)?;
    // No RLIMIT_NPROC: the kernel counts threads against it per user, so 0
    // would stop a worker run as an ordinary user (a container's, a systemd
    // DynamicUser) from starting its own threads, and it never binds root.
    // The seccomp filter is what refuses new processes.
    set("RLIMIT_AS", Resource::As, limits.address_space_bytes)?;
    let made = setup();
    drop_capabilities()?;
    let landlock = landlock()?;
    seccomp()?;
    Ok((
        Confinement {
            landlock,
            seccomp: true,
            no_new_privs: true,
            rlimits: true,
        },
        made,
    ))
}

/// Puts the main thread of process `pid` (a worker's engine thread; its
/// sentinel, started before the worker said it was ready, keeps the
/// ordinary class) in the idle scheduling class
/// (`SCHED_IDLE`): it runs only when no other thread wants the CPU. The
/// server does this when it retires a spare worker; the worker's own filter
/// would refuse it the call. Linux applies the policy to the one thread
/// whose id is `pid`; threads the engine thread starts afterwards inherit it.
pub(crate) fn idle_class(pid: u32) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; a
    // thread id is a pid_t.
    let rc = unsafe { libc::sched_setscheduler(pid as libc::pid_t, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every capability goes, from every set, whoever the server runs as: a
/// worker started by a root server is as powerless as any process.
fn drop_capabilities() -> Result<(), ConfineError> {
    // The bounding set first (needs CAP_SETPCAP, which a root server has; an
    // unprivileged one has nothing to drop), then the rest.
    for cap in 0..=63u32 {
        // SAFETY: prctl(PR_CAPBSET_DROP) takes a capability number; an
        // unknown number is EINVAL and ends the loop.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(ConfineError::Capabilities(e.to_string()));
            }
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let empty = rustix::thread::CapabilitySets {
        effective: rustix::thread::CapabilitySet::empty(),
        permitted: rustix::thread::CapabilitySet::empty(),
        inheritable: rustix::thread::CapabilitySet::empty(),
    };
    rustix::thread::set_capabilities(None, empty)
        .map_err(|e| ConfineError::Capabilities(e.to_string()))
}

fn landlock() -> Result<String, ConfineError> {
    let err = |e: landlock::RulesetError| ConfineError::Landlock(e.to_string());
    // Every filesystem right of the first ABI is required; later rights,
    // network ports and scopes are taken where the kernel has them. No rule
    // is added, so no path is reachable at all.
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(err)?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI::V6))
        .map_err(err)?
        .handle_access(AccessNet::from_all(ABI::V6))
        .map_err(err)?
        .scope(Scope::from_all(ABI::V6))
        .map_err(err)?
        .create()
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok("fully_enforced".into()),
        RulesetStatus::PartiallyEnforced => Ok("partially_enforced".into()),
        RulesetStatus::NotEnforced => Err(ConfineError::Landlock(
            "the kernel did not enforce the ruleset".into(),
        )),
    }
}

fn cond(
    arg: u8,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
}

fn seccomp() -> Result<(), ConfineError> {
    let err = |e: &dyn std::fmt::Display| ConfineError::Seccomp(e.to_string());
    let arch: seccompiler::TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(&e))?;
    let pid = std::process::id() as u64;

    // clone3 answers ENOSYS so that libc falls back to clone, whose flags
    // the main filter can inspect (clone3 passes them in memory).
    let enosys: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, vec![])].into();
    let first = SeccompFilter::new(
        enosys,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| err(&e))?;

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    // Refused outright: the network, new programs, other processes, the
    // filesystem (Landlock refuses it too), and kernel facilities a
    // computation never needs.
    for nr in [
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_connect,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kill,
        libc::SYS_tkill,
        libc::SYS_pidfd_open,
        libc::SYS_pidfd_send_signal,
        libc::SYS_pidfd_getfd,
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_setrlimit,
        libc::SYS_prlimit64,
        libc::SYS_setpriority,
        libc::SYS_sched_setscheduler,
        libc::SYS_sched_setparam,
        libc::SYS_sched_setattr,
        libc::SYS_sched_setaffinity,
        libc::SYS_ioprio_set,
        libc::SYS_migrate_pages,
        libc::SYS_move_pages,
        libc::SYS_kcmp,
        libc::SYS_process_madvise,
        libc::SYS_personality,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_fanotify_init,
        libc::SYS_inotify_init1,
        libc::SYS_mknodat,
        libc::SYS_memfd_secret,
        // System V IPC and POSIX message queues: shared objects that outlive
        // the process and cross users.
        libc::SYS_shmget,
        libc::SYS_shmat,
        libc::SYS_shmctl,
        libc::SYS_shmdt,
        libc::SYS_msgget,
        libc::SYS_msgsnd,
        libc::SYS_msgrcv,
        libc::SYS_msgctl,
        libc::SYS_semget,
        libc::SYS_semop,
        libc::SYS_semtimedop,
        libc::SYS_semctl,
        libc::SYS_mq_open,
        libc::SYS_mq_unlink,
        libc::SYS_mq_timedsend,
        libc::SYS_mq_timedreceive,
        libc::SYS_mq_notify,
        libc::SYS_mq_getsetattr,
        // Signals by other routes than kill(2).
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_rt_tgsigqueueinfo,
        // The host's identity, clock and logs.
        libc::SYS_syslog,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_settimeofday,
        libc::SYS_vhangup,
        // The new mount API.
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        // Identity changes (capabilities are dropped too).
        libc::SYS_setuid,
        libc::SYS_setgid,
        libc::SYS_setreuid,
        libc::SYS_setregid,
        libc::SYS_setresuid,
        libc::SYS_setresgid,
        libc::SYS_setfsuid,
        libc::SYS_setfsgid,
        libc::SYS_setgroups,
        libc::SYS_capset,
    ] {
        rules.insert(nr, vec![]);
    }
    // The older entry points that newer architectures no longer have, and
    // x86's port I/O.
    #[cfg(target_arch = "x86_64")]
    for nr in [
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_open,
        libc::SYS_creat,
        libc::SYS_uselib,
        libc::SYS_iopl,
        libc::SYS_ioperm,
    ] {
        rules.insert(nr, vec![]);
    }
    // Signal-driven I/O would let a descriptor signal another process
    // (F_SETSIG and F_SETOWN_EX are 10 and 15 on Linux).
    const F_SETSIG: u64 = 10;
    const F_SETOWN_EX: u64 = 15;
    rules.insert(
        libc::SYS_fcntl,
        vec![
            SeccompRule::new(vec![
                cond(1, SeccompCmpOp::Eq, libc::F_SETOWN as u64).map_err(|e| err(&e))?
            ])
            .map_err(|e| err(&e))?,
            SeccompRule::new(vec![
                cond(1, SeccompCmpOp::Eq, F_SETOWN_EX).map_err(|e| err(&e))?
            ])
            .map_err(|e| err(&e))?,
            SeccompRule::new(vec![
                cond(1, SeccompCmpOp::Eq, F_SETSIG).map_err(|e| err(&e))?
            ])
            .map_err(|e| err(&e))?,
        ],
    );
    // New processes are refused, new threads are not (clone with
    // CLONE_THREAD); signals only to this process itself (abort uses tgkill).
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![
            cond(0, SeccompCmpOp::MaskedEq(thread), 0).map_err(|e| err(&e))?
        ])
        .map_err(|e| err(&e))?],
    );
    rules.insert(
        libc::SYS_tgkill,
        vec![
            SeccompRule::new(vec![cond(0, SeccompCmpOp::Ne, pid).map_err(|e| err(&e))?])
                .map_err(|e| err(&e))?,
        ],
    );
    let main = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    for filter in [first, main] {
        let program: BpfProgram = filter.try_into().map_err(|e| err(&e))?;
        seccompiler::apply_filter(&program).map_err(|e| err(&e))?;
    }
    Ok(())
}

/// What a confined worker could still do, tried for real: the kernel's
/// refusals are the evidence. Run by `thetazero sandbox-worker --check`,
/// which the server runs before it takes any run in the confined mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe {
    pub confinement: Option<Confinement>,
    pub error: Option<String>,
    /// Each attempt and how it ended: `refused: ...` or `ALLOWED`.
    pub attempts: BTreeMap<String, String>,
    pub environment_variables: usize,
}

impl Probe {
    /// Confinement is in force and every attempt was refused.
    pub fn holds(&self) -> bool {
        self.error.is_none()
            && self.confinement.is_some()
            && self.environment_variables == 0
            && !self.attempts.is_empty()
            && self.attempts.values().all(|v| v.starts_with("refused"))
    }

    /// The first thing that is not confined, for an operator to read.
    pub fn failure(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(e.clone());
        }
        if self.environment_variables != 0 {
            return Some("the worker inherited environment variables".into());
        }
        self.attempts
            .iter()
            .find(|(_, v)| !v.starts_with("refused"))
            .map(|(k, _)| format!("a confined worker could still {k}"))
    }
}

/// Confines this process, then tries what it must not be able to do.
pub(crate) fn probe(limits: ProcessLimits) -> Probe {
    let environment_variables = std::env::vars_os().count();
    // The same runtime a worker makes, so that what is tried here is tried
    // in the state a worker runs in.
    let confinement = match apply(limits, || {
        crate::worker::engine_runtime(std::sync::Arc::default())
    }) {
        Ok((c, _runtime)) => c,
        Err(e) => {
            return Probe {
                confinement: None,
                error: Some(e.to_string()),
                attempts: BTreeMap::new(),
                environment_variables,
            }
        }
    };
    let mut attempts = BTreeMap::new();
    let outcome = |r: std::io::Result<()>| match r {
        Ok(()) => "ALLOWED".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    attempts.insert(
        "read a file (/etc/hostname)".to_string(),
        outcome(std::fs::read("/etc/hostname").map(|_| ())),
    );
    attempts.insert(
        "list a directory (/)".to_string(),
        outcome(std::fs::read_dir("/").map(|_| ())),
    );
    let scratch = std::env::temp_dir().join(format!("thetazero-probe-{}", std::process::id()));
    attempts.insert(
        "create a file".to_string(),
        outcome(std::fs::write(&scratch, b"x")),
    );
    attempts.insert(
        "open a TCP socket".to_string(),
        outcome(std::net::TcpStream::connect("127.0.0.1:9").map(|_| ())),
    );
    attempts.insert(
        "open a UDP socket".to_string(),
        outcome(std::net::UdpSocket::bind("127.0.0.1:0").map(|_| ())),
    );
    attempts.insert(
        "open a Unix socket".to_string(),
        outcome(std::os::unix::net::UnixDatagram::unbound().map(|_| ())),
    );
    attempts.insert(
        "run a program (/bin/sh)".to_string(),
        outcome(
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg("exit 0")
                .status()
                .map(|_| ()),
        ),
    );
    // SAFETY: fork in a single-threaded process; the child exits at once.
    let forked = unsafe { libc::fork() };
    if forked == 0 {
        // SAFETY: the child of a fork only exits.
        unsafe { libc::_exit(0) };
    }
    attempts.insert(
        "fork".to_string(),
        if forked < 0 {
            format!("refused: {}", std::io::Error::last_os_error())
        } else {
            "ALLOWED".to_string()
        },
    );
    attempts.insert(
        "hold a capability".to_string(),
        match rustix::thread::capabilities(None) {
            Ok(c) if c.effective.is_empty() && c.permitted.is_empty() => {
                "refused: no capability is held".to_string()
            }
            Ok(_) => "ALLOWED".to_string(),
            Err(e) => format!("refused: {e}"),
        },
    );
    // SAFETY: shmget with IPC_PRIVATE creates nothing that outlives the
    // call when refused; when allowed the segment is removed at once.
    let shm = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, 0o600) };
    if shm >= 0 {
        // SAFETY: removes the segment just created.
        unsafe { libc::shmctl(shm, libc::IPC_RMID, std::ptr::null_mut()) };
    }
    attempts.insert(
        "create shared memory (System V)".to_string(),
        if shm < 0 {
            format!("refused: {}", std::io::Error::last_os_error())
        } else {
            "ALLOWED".to_string()
        },
    );
    // SAFETY: rt_sigqueueinfo to the parent with signal 0 only checks
    // permission; the info block is zeroed.
    let queued = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        info.si_code = -1;
        libc::syscall(
            libc::SYS_rt_sigqueueinfo,
            libc::getppid(),
            0,
            &mut info as *mut libc::siginfo_t,
        )
    };
    attempts.insert(
        "queue a signal to the server".to_string(),
        if queued < 0 {
            format!("refused: {}", std::io::Error::last_os_error())
        } else {
            "ALLOWED".to_string()
        },
    );
    // SAFETY: syslog(SYSLOG_ACTION_SIZE_BUFFER) reads a number only.
    let log = unsafe { libc::syscall(libc::SYS_syslog, 10, std::ptr::null_mut::<u8>(), 0) };
    attempts.insert(
        "read the kernel log".to_string(),
        if log < 0 {
            format!("refused: {}", std::io::Error::last_os_error())
        } else {
            "ALLOWED".to_string()
        },
    );
    // SAFETY: kill(2) of the parent with signal 0 only checks permission.
    let parent = unsafe { libc::kill(libc::getppid(), 0) };
    attempts.insert(
        "signal the server".to_string(),
        if parent < 0 {
            format!("refused: {}", std::io::Error::last_os_error())
        } else {
            "ALLOWED".to_string()
        },
    );
    Probe {
        confinement: Some(confinement),
        error: None,
        attempts,
        environment_variables,
    }
}
