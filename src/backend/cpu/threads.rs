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
//! project's machines has had it; `scripts/cross-check.sh` fakes one to check the count on
//! Linux and Windows; `--threads` sets any count).
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
/// quota on Linux), and at least 1. The topology comes from the operating system: on Linux
/// `/sys` for the CPUs the process's affinity allows, on Windows
/// `GetLogicalProcessorInformationEx` for those of `GetProcessAffinityMask`, on macOS the
/// `hw.physicalcpu` sysctl. Elsewhere, or
/// where the system does not say, it is `available_parallelism` itself.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    #[cfg(target_os = "linux")]
    let cores = linux::physical_cores();
    #[cfg(windows)]
    let cores = windows::physical_cores();
    // `hw.physicalcpu`: the physical cores available in the current power mode.
    #[cfg(target_os = "macos")]
    let cores = super::sysctl::int(c"hw.physicalcpu").and_then(|cores| usize::try_from(cores).ok());
    #[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
    let cores: Option<usize> = None;
    cores.map_or(logical, |cores| cores.clamp(1, logical))
}

/// Starts rayon's global pool, which every CPU op runs on, with `threads` threads; with
/// `None`, as many as `RAYON_NUM_THREADS` says where it holds a number of threads, else one per
/// physical core ([`physical_cores`]; a value that is no number of threads is ignored:
/// [`rayon_threads_env_warning`]); 0 counts as 1. Returns the pool's size.
///
/// Call it before the first CPU op: rayon's pool cannot be resized once it runs. If it already
/// runs, `None` keeps it and a `threads` of its size is fine; another size is an
/// [`Error::Device`] saying so.
pub fn start_thread_pool(threads: Option<usize>) -> Result<usize> {
    let threads = threads.map(|threads| threads.max(1));
    let wanted = threads.unwrap_or_else(|| match rayon_threads_env() {
        RayonThreadsEnv::Count(count) => count,
        RayonThreadsEnv::Unset | RayonThreadsEnv::Ignored(_) => physical_cores(),
    });
    let builder = rayon::ThreadPoolBuilder::new().num_threads(wanted);
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

/// What `RAYON_NUM_THREADS` says.
enum RayonThreadsEnv {
    /// Unset, or empty.
    Unset,
    /// A number of threads: a positive integer, spaces around it allowed (rayon, reading
    /// it itself, would ignore ` 3`).
    Count(usize),
    /// Anything else (`abc`, `0`, `-2`), which rayon ignores: this value.
    Ignored(String),
}

fn rayon_threads_env() -> RayonThreadsEnv {
    let Some(value) = std::env::var_os(RAYON_THREADS_ENV) else {
        return RayonThreadsEnv::Unset;
    };
    match value.to_str().map(str::trim) {
        Some("") => RayonThreadsEnv::Unset,
        Some(count) => match count.parse::<usize>() {
            Ok(count) if count > 0 => RayonThreadsEnv::Count(count),
            _ => RayonThreadsEnv::Ignored(value.to_string_lossy().into_owned()),
        },
        None => RayonThreadsEnv::Ignored(value.to_string_lossy().into_owned()),
    }
}

/// A warning where `RAYON_NUM_THREADS` is set but says no number of threads (`abc`, `0`, `-2`),
/// which [`start_thread_pool`] then ignores, as rayon does: for a program to print, as libgomp
/// warns of such an `OMP_NUM_THREADS`. `None` where it is unset, empty or a thread count.
pub fn rayon_threads_env_warning() -> Option<String> {
    match rayon_threads_env() {
        RayonThreadsEnv::Ignored(value) => Some(format!(
            "{RAYON_THREADS_ENV}={value:?} is not a number of threads: ignored"
        )),
        RayonThreadsEnv::Unset | RayonThreadsEnv::Count(_) => None,
    }
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

#[cfg(windows)]
mod windows {
    use std::ffi::c_void;

    use super::processor_records::{count_cores, RELATION_PROCESSOR_CORE};

    #[link(name = "kernel32")]
    extern "system" {
        /// Fills `buffer` with one record per core (for `RelationProcessorCore`) and sets
        /// `returned_length` to their bytes; with too small a buffer, returns 0 and sets
        /// `returned_length` to the bytes needed.
        fn GetLogicalProcessorInformationEx(
            relationship: u32,
            buffer: *mut u8,
            returned_length: *mut u32,
        ) -> i32;
        /// The logical processors of its processor group that `process` may run on (0 where
        /// its threads span several groups), and those of the system.
        fn GetProcessAffinityMask(
            process: *mut c_void,
            process_mask: *mut usize,
            system_mask: *mut usize,
        ) -> i32;
        /// A pseudo-handle on this process, which needs no closing.
        fn GetCurrentProcess() -> *mut c_void;
    }

    /// The processor cores Windows reports that this process may run on (`start /affinity`,
    /// a job's limits), all processor groups together.
    pub(super) fn physical_cores() -> Option<usize> {
        let mut length = 0u32;
        // SAFETY: a null buffer of length 0 only asks for the length needed, written to
        // `length`, a live `u32`.
        unsafe {
            GetLogicalProcessorInformationEx(
                RELATION_PROCESSOR_CORE,
                std::ptr::null_mut(),
                &mut length,
            )
        };
        // `u64`s: the records hold 8-byte affinity masks, aligned as Windows lays them out.
        let mut buffer = vec![0u64; usize::try_from(length).ok()?.div_ceil(8)];
        let mut length = u32::try_from(buffer.len() * 8).ok()?;
        // SAFETY: `buffer` holds `length` writable bytes, as the call is told; `length` is a
        // live `u32`.
        let filled = unsafe {
            GetLogicalProcessorInformationEx(
                RELATION_PROCESSOR_CORE,
                buffer.as_mut_ptr().cast(),
                &mut length,
            )
        };
        if filled == 0 {
            return None;
        }
        let records = bytemuck::cast_slice(&buffer).get(..usize::try_from(length).ok()?)?;
        count_cores(records, process_affinity())
    }

    /// `GetProcessAffinityMask`'s mask for this process, where it has one.
    fn process_affinity() -> Option<u64> {
        let (mut process_mask, mut system_mask) = (0usize, 0usize);
        // SAFETY: the pseudo-handle is always valid; both masks are live `usize`s.
        let read = unsafe {
            GetProcessAffinityMask(GetCurrentProcess(), &mut process_mask, &mut system_mask)
        };
        (read != 0 && process_mask != 0).then_some(process_mask as u64)
    }
}

/// Windows' answer to `GetLogicalProcessorInformationEx(RelationProcessorCore)`, read
/// (compiled on every system for its tests).
#[cfg(any(windows, test))]
mod processor_records {
    /// Each record (`SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX`) starts with two `u32`s: what it
    /// describes, and its own length in bytes, header included.
    const HEADER_BYTES: usize = 8;
    /// Where a core's record holds its `GroupCount` (a `u16`, 1 for a core: a core is in one
    /// processor group), after the header, `Flags`, `EfficiencyClass` and 20 reserved bytes.
    const GROUP_COUNT_AT: usize = 30;
    /// Where its first `GROUP_AFFINITY` starts: `Mask` (a `u64`, the core's logical
    /// processors in the group, two or more bits where it has SMT), then `Group` (a `u16`).
    const GROUP_AFFINITY_AT: usize = 32;
    /// `RelationProcessorCore` of Windows' `LOGICAL_PROCESSOR_RELATIONSHIP`: what to ask for,
    /// and a record that describes one core.
    pub(super) const RELATION_PROCESSOR_CORE: u32 = 0;

    /// How many of the cores the records describe this process may run on: those with a
    /// logical processor in `process_affinity` (`GetProcessAffinityMask`'s, for processor
    /// group 0) where every core is in group 0, else all of them. `None` where that is none,
    /// or a record is cut short.
    pub(super) fn count_cores(records: &[u8], process_affinity: Option<u64>) -> Option<usize> {
        let cores = cores(records)?;
        let one_group = cores.iter().all(|&(group, _)| group == 0);
        let count = match process_affinity {
            Some(allowed) if one_group => cores
                .iter()
                .filter(|&&(_, mask)| mask & allowed != 0)
                .count(),
            _ => cores.len(),
        };
        (count > 0).then_some(count)
    }

    /// Each core's processor group and the mask of its logical processors there.
    fn cores(mut records: &[u8]) -> Option<Vec<(u16, u64)>> {
        let mut cores = Vec::new();
        while !records.is_empty() {
            let bytes = |at: usize, count: usize| records.get(at..at + count);
            let u32_at = |at| Some(u32::from_le_bytes(bytes(at, 4)?.try_into().ok()?));
            let u16_at = |at| Some(u16::from_le_bytes(bytes(at, 2)?.try_into().ok()?));
            let (relationship, length) = (u32_at(0)?, usize::try_from(u32_at(4)?).ok()?);
            if length < HEADER_BYTES || length > records.len() {
                return None;
            }
            if relationship == RELATION_PROCESSOR_CORE {
                let in_record = |at, count| (at + count <= length).then_some(());
                in_record(GROUP_AFFINITY_AT, size_of::<u64>() + size_of::<u16>())?;
                if u16_at(GROUP_COUNT_AT)? == 0 {
                    return None;
                }
                let mask = u64::from_le_bytes(bytes(GROUP_AFFINITY_AT, 8)?.try_into().ok()?);
                cores.push((u16_at(GROUP_AFFINITY_AT + 8)?, mask));
            }
            records = &records[length..];
        }
        Some(cores)
    }

    #[cfg(test)]
    mod tests {
        use super::{count_cores, GROUP_COUNT_AT, RELATION_PROCESSOR_CORE};

        /// A record as Windows lays one out on x86-64 (48 bytes): header; `Flags`,
        /// `EfficiencyClass`, 20 reserved bytes, `GroupCount` (1); one `GROUP_AFFINITY`
        /// (`Mask: u64`, `Group: u16`, 3 reserved `u16`s).
        fn record(relationship: u32, group: u16, mask: u64) -> Vec<u8> {
            let mut bytes = relationship.to_le_bytes().to_vec();
            bytes.extend(48u32.to_le_bytes());
            bytes.extend([u8::from(mask.count_ones() > 1), 0]); // LTP_PC_SMT
            bytes.extend([0; 20]);
            bytes.extend(1u16.to_le_bytes());
            bytes.extend(mask.to_le_bytes());
            bytes.extend(group.to_le_bytes());
            bytes.extend([0; 6]);
            bytes
        }

        /// Four cores of two threads each: logical processors 2i and 2i + 1 of group 0.
        fn four_smt_cores() -> Vec<u8> {
            (0..4)
                .flat_map(|core| record(RELATION_PROCESSOR_CORE, 0, 0b11 << (2 * core)))
                .collect()
        }

        #[test]
        fn each_core_record_is_one_core_whatever_its_threads() {
            let mut records = four_smt_cores();
            assert_eq!(records.len(), 4 * 48);
            assert_eq!(count_cores(&records, None), Some(4));
            assert_eq!(count_cores(&records, Some(u64::MAX)), Some(4));
            // A record of another kind (2, a cache) is no core.
            records.extend(record(2, 0, 0xff));
            assert_eq!(count_cores(&records, None), Some(4));
            // A core of one thread in the second processor group.
            records.extend(record(RELATION_PROCESSOR_CORE, 1, 0b1));
            assert_eq!(count_cores(&records, None), Some(5));
        }

        #[test]
        fn the_process_affinity_keeps_the_cores_it_reaches() {
            let records = four_smt_cores();
            // Logical processor 0: core 0; processors 0 and 2: cores 0 and 1; 1-2: 0 and 1.
            assert_eq!(count_cores(&records, Some(0b1)), Some(1));
            assert_eq!(count_cores(&records, Some(0b101)), Some(2));
            assert_eq!(count_cores(&records, Some(0b110)), Some(2));
            assert_eq!(count_cores(&records, Some(0b1 << 8)), None);
            // With a second processor group, group 0's mask says nothing of the others.
            let mut two_groups = records.clone();
            two_groups.extend(record(RELATION_PROCESSOR_CORE, 1, 0b1));
            assert_eq!(count_cores(&two_groups, Some(0b1)), Some(5));
        }

        #[test]
        fn no_cores_or_a_broken_length_says_nothing() {
            assert_eq!(count_cores(&[], None), None);
            assert_eq!(count_cores(&record(2, 0, 0b1), None), None);
            let core = record(RELATION_PROCESSOR_CORE, 0, 0b11);
            // Cut short: the record's length runs past the end.
            assert_eq!(count_cores(&core[..40], None), None);
            assert_eq!(count_cores(&core[..6], None), None);
            // A length of 0 or 4 would never move on to the next record; a core's record of
            // 40 bytes ends before its mask's group.
            for length in [0u32, 4, 40] {
                let mut broken = core.clone();
                broken[4..8].copy_from_slice(&length.to_le_bytes());
                assert_eq!(count_cores(&broken, None), None, "length {length}");
            }
            // A core in no processor group.
            let mut no_group = core.clone();
            no_group[GROUP_COUNT_AT..GROUP_COUNT_AT + 2].copy_from_slice(&0u16.to_le_bytes());
            assert_eq!(count_cores(&no_group, None), None);
        }
    }
}

#[cfg(all(test, windows))]
mod windows_tests {
    #[test]
    fn windows_reports_the_cores() {
        let cores = super::windows::physical_cores().expect("GetLogicalProcessorInformationEx");
        let logical = std::thread::available_parallelism().unwrap().get();
        // Physical cores, all processor groups together: at least one; at most the logical
        // processors where one group holds them all (at most 64).
        assert!(cores >= 1);
        if logical < 64 {
            assert!(
                cores <= logical,
                "{cores} cores, {logical} logical processors"
            );
        }
        eprintln!("{cores} cores, {logical} logical processors");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
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
