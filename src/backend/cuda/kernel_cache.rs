//! Compiled kernels kept on disk between runs, so that a process compiles each `kernels/*.cu`
//! file once per GPU architecture and source, not at every start (NVRTC takes a few seconds for
//! all of them; loading a cubin, milliseconds).
//!
//! An entry is one file, `<file>-sm_<XY>-<hash>.cubin`: the full key (what the cubin was
//! compiled from: the crate, NVRTC's version, the architecture, the options and the source),
//! then the cubin's length and hash, then the cubin. It is used only if its key equals the
//! wanted one byte for byte and the cubin is whole, so the hash in the name only spreads
//! entries out; a changed kernel, define or NVRTC compiles afresh, and so does a damaged entry.
//! Entries are written atomically (a crash leaves the old file or none), and a cache that
//! cannot be read or written only costs the compile: it never fails a launch.
//!
//! Where: `$FERROGRAD_KERNEL_CACHE` (empty: no cache), else `$XDG_CACHE_HOME/ferrograd/kernels`,
//! else `~/.cache/ferrograd/kernels`.

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::kernels::KernelModule;
use super::nvrtc::{self, Output};
use crate::atomic_file::write_atomically;

/// The environment variable naming the cache's directory (empty: no cache).
pub const CACHE_ENV: &str = "FERROGRAD_KERNEL_CACHE";

/// The cache's directory from the environment (see the module's documentation); `None` when
/// caching is off or no home directory is known.
pub fn cache_dir() -> Option<PathBuf> {
    cache_dir_in(|name| std::env::var_os(name))
}

/// [`cache_dir`] in the environment `env` gives.
fn cache_dir_in(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let non_empty = |name| env(name).filter(|v| !v.is_empty());
    match env(CACHE_ENV) {
        Some(dir) if dir.is_empty() => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => non_empty("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| non_empty("HOME").map(|home| Path::new(&home).join(".cache")))
            .map(|cache| cache.join("ferrograd").join("kernels")),
    }
}

/// How a GPU got its kernels when it was opened ([`super::CudaDevice::kernels_loaded`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelsLoaded {
    /// Kernel files NVRTC compiled (a first run, or a changed kernel, option or NVRTC).
    pub compiled: usize,
    /// Kernel files read from the cache.
    pub from_cache: usize,
    /// How long compiling, reading and loading them took, in seconds.
    pub seconds: f64,
}

impl KernelsLoaded {
    /// Counts a file whose cubin came from `source`.
    pub(crate) fn count(&mut self, source: Source) {
        match source {
            Source::Cache => self.from_cache += 1,
            Source::Compiled => self.compiled += 1,
        }
    }
}

/// Where a cubin came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Read from the cache.
    Cache,
    /// Compiled now (and stored, where the cache could be written).
    Compiled,
}

/// The cubin of `module` for `sm_<major><minor>` with the environment's macro definitions
/// (`nvrtc::kernel_defines`), from the cache in `dir` when it holds one compiled from exactly
/// this, else compiled and stored there. `dir` `None`: always compiled.
///
/// # Errors
/// As [`nvrtc::compile`] (a cache that fails is not an error).
pub fn cubin(
    dir: Option<&Path>,
    module: &KernelModule,
    major: u32,
    minor: u32,
) -> Result<(Vec<u8>, Source), String> {
    let defines = nvrtc::kernel_defines()?;
    let compile = || {
        nvrtc::compile_with_defines(
            module,
            major,
            minor,
            Output::Cubin { report: false },
            &defines,
        )
        .map(|compiled| compiled.image)
    };
    let Some(dir) = dir else {
        return Ok((compile()?, Source::Compiled));
    };
    let key = key(module, major, minor, &defines);
    let path = entry_path(dir, module, major, minor, &key);
    if let Some(cubin) = read_entry(&path, &key) {
        return Ok((cubin, Source::Cache));
    }
    let cubin = compile()?;
    // Best effort: an unwritable cache only means compiling again next time.
    let _ = std::fs::create_dir_all(dir).and_then(|()| {
        write_atomically(&path, |file| {
            file.write_all(&(key.len() as u64).to_le_bytes())?;
            file.write_all(key.as_bytes())?;
            file.write_all(&(cubin.len() as u64).to_le_bytes())?;
            file.write_all(&hash(&cubin).to_le_bytes())?;
            file.write_all(&cubin)
        })
    });
    Ok((cubin, Source::Compiled))
}

/// Everything the cubin depends on, as text.
fn key(module: &KernelModule, major: u32, minor: u32, defines: &[String]) -> String {
    format!(
        "ferrograd {}\nnvrtc {}\nsm_{major}{minor}\ndefines {defines:?}\ninclude {:?}\n{}",
        env!("CARGO_PKG_VERSION"),
        nvrtc::version().unwrap_or_else(|err| format!("unknown ({err})")),
        nvrtc::include_paths(),
        module.full_source()
    )
}

/// A 64-bit hash of `bytes` (std's SipHash with fixed keys: the same in every run of a build).
fn hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn entry_path(dir: &Path, module: &KernelModule, major: u32, minor: u32, key: &str) -> PathBuf {
    let stem = module.file.trim_end_matches(".cu");
    dir.join(format!(
        "{stem}-sm_{major}{minor}-{:016x}.cubin",
        hash(key.as_bytes())
    ))
}

/// The cubin of the entry at `path` if its key is `key` and its cubin is whole (its length
/// and hash as written); `None` for a missing, foreign, truncated or damaged entry.
fn read_entry(path: &Path, key: &str) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let (key_length, rest) = bytes.split_first_chunk::<8>()?;
    let (stored_key, rest) =
        rest.split_at_checked(usize::try_from(u64::from_le_bytes(*key_length)).ok()?)?;
    let (cubin_length, rest) = rest.split_first_chunk::<8>()?;
    let (cubin_hash, cubin) = rest.split_first_chunk::<8>()?;
    let whole = u64::try_from(cubin.len()).ok() == Some(u64::from_le_bytes(*cubin_length))
        && hash(cubin) == u64::from_le_bytes(*cubin_hash);
    (stored_key == key.as_bytes() && whole).then(|| cubin.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's promise: `$FERROGRAD_KERNEL_CACHE` (empty: none), else the XDG cache, else
    /// `~/.cache`; an empty XDG or home variable counts as unset, as the XDG spec says.
    #[test]
    fn the_cache_directory_follows_the_environment() {
        let dir = |vars: &[(&str, &str)]| {
            cache_dir_in(|name| {
                let value = vars.iter().find(|(var, _)| *var == name);
                value.map(|(_, value)| OsString::from(value))
            })
        };
        let kernels = |cache: &str| Some(Path::new(cache).join("ferrograd").join("kernels"));
        let home = ("HOME", "/home/u");
        assert_eq!(dir(&[home]), kernels("/home/u/.cache"));
        assert_eq!(dir(&[home, ("XDG_CACHE_HOME", "/xdg")]), kernels("/xdg"));
        assert_eq!(
            dir(&[home, ("XDG_CACHE_HOME", "")]),
            kernels("/home/u/.cache")
        );
        let own = (CACHE_ENV, "/tmp/k");
        assert_eq!(
            dir(&[home, ("XDG_CACHE_HOME", "/xdg"), own]),
            Some("/tmp/k".into())
        );
        assert_eq!(dir(&[home, (CACHE_ENV, "")]), None, "empty: no cache");
        assert_eq!(dir(&[("HOME", "")]), None, "no home directory known");
        assert_eq!(dir(&[]), None);
    }
}
