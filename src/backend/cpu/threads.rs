//! How many threads the CPU backend runs on: by default one per physical core, as PyTorch's
//! intra-op pool (c10's `TaskThreadPoolBase::defaultNumThreads`: "cores are physical ones").
//!
//! Every parallel loop of the backend runs on rayon's global pool, which by itself starts one
//! thread per logical CPU. On a processor with simultaneous multithreading (Intel's
//! Hyper-Threading, AMD's SMT) that is two threads per core, sharing the core's two FMA units
//! and its L1 cache. A second thread can fill cycles the first spends waiting, but the GEMM's
//! blocking keeps one `B` micro-panel in L1 while it works (32 KiB for the AVX-512 kernel: all
//! of Zen 4's L1, two thirds of a recent Intel core's), and two threads on one core keep two;
//! and [`hot_pool`](super::hot_pool) keeps every idle worker polling through a training step, on
//! the very core another worker computes on. PyTorch and MKL start one thread per physical
//! core; so does ferrograd, until a machine with SMT measures otherwise (none of this
//! project's machines has had it; `--threads` sets any count).
//!
//! [`start_thread_pool`] starts the pool at that size, or at the one given; programs call it
//! before their first op (`mnist_gan`, `gan_bench`). A library user who does not call it gets
//! rayon's default.

use std::num::NonZeroUsize;

use crate::error::{Error, Result};

/// The environment variable rayon reads for its pool's size.
const RAYON_THREADS_ENV: &str = "RAYON_NUM_THREADS";

/// The physical cores this process may run on: CPUs that are SMT siblings of one core count
/// once. At most [`std::thread::available_parallelism`] (which also counts a container's CPU
/// quota), and at least 1. On Linux it reads the CPU topology from `/sys` for the CPUs the
/// process's affinity allows; elsewhere, or where `/sys` does not say, it is
/// `available_parallelism` itself.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    #[cfg(target_os = "linux")]
    if let Some(cores) = linux::physical_cores() {
        return cores.clamp(1, logical);
    }
    logical
}

/// Starts rayon's global pool, which every CPU op runs on, with `threads` threads; with
/// `None`, as many as `RAYON_NUM_THREADS` says where it is set, else one per physical core
/// ([`physical_cores`]); 0 counts as 1. Returns the pool's size.
///
/// Call it before the first CPU op: rayon's pool cannot be resized once it runs. If it already
/// runs, `None` keeps it and a `threads` of its size is fine; another size is an
/// [`Error::Device`] saying so.
pub fn start_thread_pool(threads: Option<usize>) -> Result<usize> {
    let threads = threads.map(|threads| threads.max(1));
    let rayon_env_set = std::env::var(RAYON_THREADS_ENV)
        .is_ok_and(|count| count.trim().parse::<usize>().is_ok_and(|count| count > 0));
    let wanted = match threads {
        None if rayon_env_set => None, // rayon's builder reads it
        None => Some(physical_cores()),
        given => given,
    };
    let builder = rayon::ThreadPoolBuilder::new().num_threads(wanted.unwrap_or(0));
    if builder.build_global().is_err() {
        // Already running (the only way `build_global` fails short of the OS refusing
        // threads, which the pool's first use would report anyway).
        let running = rayon::current_num_threads();
        return match threads {
            Some(threads) if threads != running => Err(Error::Device(format!(
                "the CPU thread pool already runs {running} threads and cannot be resized to \
                 {threads}: set its size before the first CPU op"
            ))),
            _ => Ok(running),
        };
    }
    Ok(rayon::current_num_threads())
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashSet;
    use std::fs;
    use std::path::Path;

    /// The physical cores among the CPUs this process may run on, from `/sys`.
    pub(super) fn physical_cores() -> Option<usize> {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        cores_of_allowed_cpus(&status, Path::new("/sys/devices/system/cpu"))
    }

    /// How many distinct cores the CPUs of `status`'s `Cpus_allowed_list` (the text of
    /// `/proc/<pid>/status`) sit on: CPUs of one core list the same siblings in
    /// `cpu_dir/cpuN/topology/core_cpus_list` (`thread_siblings_list` before Linux 5.6).
    /// `None` where the list is missing or no allowed CPU has a topology.
    pub(super) fn cores_of_allowed_cpus(status: &str, cpu_dir: &Path) -> Option<usize> {
        let allowed = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
        let mut cores = HashSet::new();
        for cpu in parse_cpu_list(allowed)? {
            let topology = cpu_dir.join(format!("cpu{cpu}/topology"));
            // An allowed CPU without a topology (offline) holds no thread.
            let siblings = ["core_cpus_list", "thread_siblings_list"]
                .iter()
                .find_map(|file| fs::read_to_string(topology.join(file)).ok());
            if let Some(siblings) = siblings {
                cores.insert(parse_cpu_list(&siblings)?);
            }
        }
        (!cores.is_empty()).then_some(cores.len())
    }

    /// The CPUs of a list as the kernel prints one, `0-3,8,10-11`; `None` if malformed.
    pub(super) fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
        let mut cpus = Vec::new();
        for part in list.trim().split(',').filter(|part| !part.is_empty()) {
            let (first, last): (usize, usize) = match part.split_once('-') {
                Some((first, last)) => (first.parse().ok()?, last.parse().ok()?),
                None => {
                    let cpu = part.parse().ok()?;
                    (cpu, cpu)
                }
            };
            if first > last {
                return None;
            }
            cpus.extend(first..=last);
        }
        Some(cpus)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::{cores_of_allowed_cpus, parse_cpu_list};
    use std::collections::HashSet;
    use std::fs;
    use std::path::PathBuf;

    /// A `/sys/devices/system/cpu` of its own: CPU `i` listing `siblings[i]` in `file`.
    fn fake_cpu_dir(name: &str, file: &str, siblings: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrograd-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (cpu, siblings) in siblings.iter().enumerate() {
            let topology = dir.join(format!("cpu{cpu}/topology"));
            fs::create_dir_all(&topology).unwrap();
            fs::write(topology.join(file), format!("{siblings}\n")).unwrap();
        }
        dir
    }

    fn status(allowed: &str) -> String {
        format!("Name:\tferrograd\nCpus_allowed_list:\t{allowed}\nMems_allowed:\t1\n")
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_prints_them() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("0-x"), None);
    }

    #[test]
    fn smt_siblings_count_as_one_core() {
        // Four cores of two threads, numbered as Intel's are: CPU i and i + 4 share core i.
        let siblings = ["0,4", "1,5", "2,6", "3,7", "0,4", "1,5", "2,6", "3,7"];
        let dir = fake_cpu_dir("smt", "core_cpus_list", &siblings);
        assert_eq!(cores_of_allowed_cpus(&status("0-7"), &dir), Some(4));
        assert_eq!(cores_of_allowed_cpus(&status("0-3"), &dir), Some(4));
        assert_eq!(cores_of_allowed_cpus(&status("0,4"), &dir), Some(1));
        assert_eq!(cores_of_allowed_cpus(&status("1,4-5"), &dir), Some(2));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_smt_every_cpu_is_a_core() {
        // Numbered as AMD's are (siblings adjacent) but one thread a core; an older kernel's
        // file name.
        let dir = fake_cpu_dir("no-smt", "thread_siblings_list", &["0", "1", "2"]);
        assert_eq!(cores_of_allowed_cpus(&status("0-2"), &dir), Some(3));
        assert_eq!(cores_of_allowed_cpus(&status("1"), &dir), Some(1));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_topology_or_no_list_says_nothing() {
        let dir = fake_cpu_dir("offline", "core_cpus_list", &["0-1", "0-1"]);
        // CPU 2 has no topology (offline): it holds no thread.
        assert_eq!(cores_of_allowed_cpus(&status("0-2"), &dir), Some(1));
        assert_eq!(cores_of_allowed_cpus(&status("2-3"), &dir), None);
        assert_eq!(cores_of_allowed_cpus("Name:\tferrograd\n", &dir), None);
        assert_eq!(cores_of_allowed_cpus(&status("0-x"), &dir), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn this_machine_agrees_with_proc_cpuinfo() {
        // An independent count: the distinct (package, core) pairs of /proc/cpuinfo, where it
        // names them (x86) and the process may use every CPU it lists.
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap();
        let mut cores = HashSet::new();
        let mut processors = 0;
        for block in cpuinfo
            .split("\n\n")
            .filter(|block| !block.trim().is_empty())
        {
            let field = |name: &str| {
                block.lines().find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    (key.trim() == name).then(|| value.trim().to_string())
                })
            };
            let (Some(package), Some(core)) = (field("physical id"), field("core id")) else {
                eprintln!("skipped: /proc/cpuinfo does not name each processor's core");
                return;
            };
            cores.insert((package, core));
            processors += 1;
        }
        let usable = std::thread::available_parallelism().unwrap().get();
        if usable != processors {
            eprintln!("skipped: this process may use {usable} of the {processors} CPUs");
            return;
        }
        assert_eq!(super::physical_cores(), cores.len());
    }
}
