//! From raw instruction pointers to named frames.
//!
//! User addresses are turned into file offsets with a snapshot of
//! `/proc/PID/maps` and resolved against the mapped ELF file's symbol tables
//! (`.symtab`, `.dynsym`; Go binaries keep a `.symtab` unless built with
//! `-ldflags=-s`) by blazesym. The snapshot keeps each executable file open,
//! so a process that exits before symbolisation still gets names.
//! Kernel addresses are resolved with `/proc/kallsyms`.
//!
//! Nothing is dropped: an address without a symbol becomes
//! `module+0xoffset` (the file offset in that module), and an address outside
//! every known mapping becomes `[unknown]`.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use blazesym::symbolize::source::{Elf, Kernel, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use blazesym::MaybeDefault;

use nemutator_core::profile::{Frame, Profile, ProfileError};

/// How many ELF files the snapshots may keep open at once.
const MAX_OPEN_MODULES: usize = 512;
/// Name of a frame about which nothing is known.
pub(crate) const UNKNOWN: &str = "[unknown]";

/// One sampled stack as the kernel gave it: addresses leaf first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RawStack {
    /// The process the sample belongs to.
    pub tgid: u32,
    /// User-space return addresses, leaf first.
    pub user: Vec<u64>,
    /// Kernel return addresses, leaf first.
    pub kernel: Vec<u64>,
}

/// Unsymbolised samples, as collected by a backend.
#[derive(Debug, Default)]
pub(crate) struct RawProfile {
    /// Sample count per distinct stack.
    pub stacks: HashMap<RawStack, u64>,
    /// Samples that could not be recorded.
    pub lost: u64,
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub executable: bool,
    /// The path or pseudo-name (`[vdso]`), empty for anonymous memory.
    pub path: String,
}

/// Parses the text of `/proc/PID/maps`; malformed lines are skipped.
pub(crate) fn parse_maps(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_maps_line).collect()
}

fn parse_maps_line(line: &str) -> Option<MapEntry> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let offset = u64::from_str_radix(it.next()?, 16).ok()?;
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path = it.next().unwrap_or("").trim_start().to_owned();
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end <= start {
        return None;
    }
    Some(MapEntry {
        start,
        end,
        offset,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
        path,
    })
}

/// An executable mapping with, when it could be opened, its file.
#[derive(Debug)]
struct Module {
    entry: MapEntry,
    file: Option<std::sync::Arc<File>>,
}

/// Snapshots of the executable mappings of the profiled processes.
#[derive(Debug)]
pub(crate) struct MapsCache {
    proc_root: PathBuf,
    by_tgid: HashMap<u32, Vec<Module>>,
    open_files: usize,
}

impl MapsCache {
    /// An empty cache reading from `proc_root` (normally `/proc`).
    pub fn new(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            by_tgid: HashMap::new(),
            open_files: 0,
        }
    }

    /// Reads (or re-reads) the mappings of `tgid` and opens the files of new
    /// executable mappings. Mappings seen before are kept, so an earlier
    /// snapshot still serves a library unloaded since. Silently does nothing
    /// for a process that has gone.
    pub fn snapshot(&mut self, tgid: u32) {
        let pid_dir = self.proc_root.join(tgid.to_string());
        let Ok(text) = std::fs::read_to_string(pid_dir.join("maps")) else {
            return;
        };
        let known = self.by_tgid.entry(tgid).or_default();
        for entry in parse_maps(&text).into_iter().filter(|e| e.executable) {
            if known.iter().any(|m| m.entry == entry) {
                continue;
            }
            let file = if entry.path.starts_with('/') && self.open_files < MAX_OPEN_MODULES {
                open_module(&pid_dir, &entry)
            } else {
                None
            };
            if file.is_some() {
                self.open_files += 1;
            }
            // Newest snapshot first: it wins over stale entries on overlap.
            known.insert(
                0,
                Module {
                    entry,
                    file: file.map(std::sync::Arc::new),
                },
            );
        }
    }

    fn find(&self, tgid: u32, addr: u64) -> Option<&Module> {
        self.by_tgid
            .get(&tgid)?
            .iter()
            .find(|m| m.entry.start <= addr && addr < m.entry.end)
    }
}

/// Opens the file behind a mapping: through `map_files` (works for deleted
/// files and other mount namespaces), else through the process's root.
fn open_module(pid_dir: &Path, e: &MapEntry) -> Option<File> {
    let by_range = pid_dir
        .join("map_files")
        .join(format!("{:x}-{:x}", e.start, e.end));
    File::open(by_range).ok().or_else(|| {
        let rel = e.path.trim_start_matches('/');
        File::open(pid_dir.join("root").join(rel)).ok()
    })
}

fn module_name(path: &str) -> &str {
    if path.is_empty() {
        return "[anon]";
    }
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    path.rsplit('/').next().unwrap_or(path)
}

/// Resolves the addresses of a raw profile into a [`Profile`].
/// What every backend does around its sampling: snapshot the targets'
/// mappings first (a process may exit before symbolisation), run `sample`,
/// snapshot every sampled process again (new members of a cgroup, libraries
/// loaded meanwhile), then symbolise.
pub(crate) fn sample_and_symbolize(
    proc_root: &Path,
    tgids: &BTreeSet<u32>,
    backend: &'static str,
    sample: impl FnOnce() -> Result<RawProfile, ProfileError>,
) -> Result<Profile, ProfileError> {
    let mut maps = MapsCache::new(proc_root);
    for &tgid in tgids {
        maps.snapshot(tgid);
    }
    let raw = sample()?;
    let seen: BTreeSet<u32> = raw.stacks.keys().map(|s| s.tgid).collect();
    for tgid in seen {
        maps.snapshot(tgid);
    }
    Ok(symbolize(&raw, &maps, backend))
}

pub(crate) fn symbolize(raw: &RawProfile, maps: &MapsCache, backend: &'static str) -> Profile {
    let symbolizer = Symbolizer::builder()
        .enable_code_info(false)
        .enable_inlined_fns(false)
        .enable_demangling(true)
        .build();

    // Kernel addresses: one batch for everything.
    let kaddrs: BTreeSet<u64> = raw
        .stacks
        .keys()
        .flat_map(|s| caller_adjusted(&s.kernel))
        .collect();
    let knames = symbolize_kernel(&symbolizer, &kaddrs);

    // User addresses: per (process, module) batches of file offsets.
    let mut unames: HashMap<(u32, u64), String> = HashMap::new();
    let mut batches: HashMap<(u32, usize), (Vec<u64>, Vec<u64>)> = HashMap::new();
    for s in raw.stacks.keys() {
        for addr in caller_adjusted(&s.user) {
            if unames.contains_key(&(s.tgid, addr)) {
                continue;
            }
            let Some(m) = maps.find(s.tgid, addr) else {
                unames.insert((s.tgid, addr), UNKNOWN.to_owned());
                continue;
            };
            let file_off = (addr - m.entry.start).wrapping_add(m.entry.offset);
            // Placeholder, replaced by a symbol name when one is found.
            unames.insert(
                (s.tgid, addr),
                format!("{}+0x{file_off:x}", module_name(&m.entry.path)),
            );
            if let Some(f) = &m.file {
                let key = (s.tgid, std::sync::Arc::as_ptr(f) as usize);
                let b = batches.entry(key).or_default();
                b.0.push(addr);
                b.1.push(file_off);
            }
        }
    }
    for ((tgid, file_ptr), (addrs, offsets)) in batches {
        let Some(file) = find_file(maps, tgid, file_ptr) else {
            continue;
        };
        // The kept descriptor, re-opened by path so blazesym can map it.
        let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let mut src = Elf::new(path);
        src.debug_syms = false;
        let src = Source::Elf(src);
        match symbolizer.symbolize(&src, Input::FileOffset(&offsets)) {
            Ok(res) => {
                for (addr, sym) in addrs.iter().zip(res) {
                    if let Symbolized::Sym(sym) = sym {
                        unames.insert((tgid, *addr), sym.name.into_owned());
                    }
                }
            }
            Err(e) => tracing::debug!(tgid, error = %e, "ELF symbolisation failed"),
        }
    }

    let mut merged: HashMap<Vec<Frame>, u64> = HashMap::new();
    for (s, count) in &raw.stacks {
        let mut frames: Vec<Frame> = caller_adjusted(&s.user)
            .rev()
            .map(|a| {
                Frame::user(
                    unames
                        .get(&(s.tgid, a))
                        .cloned()
                        .unwrap_or_else(|| UNKNOWN.to_owned()),
                )
            })
            .collect();
        frames.extend(caller_adjusted(&s.kernel).rev().map(|a| {
            Frame::kernel(
                knames
                    .get(&a)
                    .cloned()
                    .unwrap_or_else(|| format!("[kernel]+0x{a:x}")),
            )
        }));
        if frames.is_empty() {
            frames.push(Frame::user(UNKNOWN));
        }
        *merged.entry(frames).or_default() += count;
    }
    let mut stacks: Vec<(Vec<Frame>, u64)> = merged.into_iter().collect();
    stacks.sort();
    Profile {
        samples: stacks.iter().map(|(_, c)| c).sum(),
        stacks,
        backend,
        lost: raw.lost,
    }
}

fn find_file(maps: &MapsCache, tgid: u32, ptr: usize) -> Option<&File> {
    maps.by_tgid
        .get(&tgid)?
        .iter()
        .filter_map(|m| m.file.as_ref())
        .find(|f| std::sync::Arc::as_ptr(f) as usize == ptr)
        .map(|f| f.as_ref())
}

/// Return addresses point after the call; step back one byte on every frame
/// but the leaf so the address falls inside the calling function.
fn caller_adjusted(ips: &[u64]) -> impl DoubleEndedIterator<Item = u64> + '_ {
    ips.iter()
        .enumerate()
        .map(|(i, &ip)| if i == 0 { ip } else { ip.saturating_sub(1) })
}

fn symbolize_kernel(symbolizer: &Symbolizer, addrs: &BTreeSet<u64>) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    if addrs.is_empty() {
        return out;
    }
    let addrs: Vec<u64> = addrs.iter().copied().collect();
    let mut k = Kernel {
        vmlinux: MaybeDefault::None,
        debug_syms: false,
        ..Kernel::default()
    };
    k.kallsyms = MaybeDefault::Default;
    match symbolizer.symbolize(&Source::Kernel(k), Input::AbsAddr(&addrs)) {
        Ok(res) => {
            for (addr, sym) in addrs.iter().zip(res) {
                if let Symbolized::Sym(sym) = sym {
                    out.insert(*addr, sym.name.into_owned());
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "kernel symbolisation failed"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d4c0a00000-55d4c0a01000 r--p 00000000 08:01 1234   /usr/bin/hot\n\
55d4c0a01000-55d4c0a02000 r-xp 00001000 08:01 1234   /usr/bin/hot\n\
7f0000000000-7f0000100000 r-xp 00028000 08:01 99     /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7f0000200000-7f0000201000 rw-p 00000000 00:00 0 \n\
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0      [vdso]\n\
garbage line\n\
ffff-0000 r-xp 0 0 0 /backwards\n";

    #[test]
    fn parses_maps_lines() {
        let m = parse_maps(MAPS);
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].start, 0x55d4c0a01000);
        assert_eq!(m[1].offset, 0x1000);
        assert!(m[1].executable && !m[0].executable);
        assert_eq!(m[2].path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(m[3].path, "");
        assert_eq!(m[4].path, "[vdso]");
    }

    #[test]
    fn module_names_are_basenames() {
        assert_eq!(module_name("/usr/lib/libc.so.6"), "libc.so.6");
        assert_eq!(module_name("/app/server (deleted)"), "server");
        assert_eq!(module_name("[vdso]"), "[vdso]");
        assert_eq!(module_name(""), "[anon]");
    }

    fn mk_cache_with_fake_proc(maps: &str) -> (tempfile::TempDir, MapsCache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("42");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join("maps"), maps).expect("write");
        let mut cache = MapsCache::new(dir.path());
        cache.snapshot(42);
        (dir, cache)
    }

    #[test]
    fn unresolved_addresses_become_module_offsets_never_dropped() {
        // The files in these maps do not exist, so nothing has symbols.
        let (_dir, cache) = mk_cache_with_fake_proc(MAPS);
        let mut raw = RawProfile::default();
        raw.stacks.insert(
            RawStack {
                tgid: 42,
                // leaf in the binary, caller in libc, root outside any mapping
                user: vec![0x55d4c0a01010, 0x7f0000000101, 0x1000],
                kernel: vec![],
            },
            3,
        );
        raw.stacks.insert(
            RawStack {
                tgid: 7, // never snapshotted: process gone
                user: vec![0x1234],
                kernel: vec![],
            },
            1,
        );
        raw.stacks.insert(
            RawStack {
                tgid: 42,
                user: vec![],
                kernel: vec![],
            },
            2,
        );
        raw.lost = 5;
        let p = symbolize(&raw, &cache, "test");
        assert_eq!(p.samples, 6);
        assert_eq!(p.lost, 5);
        let names: Vec<Vec<&str>> = p
            .stacks
            .iter()
            .map(|(f, _)| f.iter().map(|f| f.name.as_str()).collect())
            .collect();
        assert!(names.contains(&vec!["[unknown]", "libc.so.6+0x28100", "hot+0x1010"]));
        assert!(names.contains(&vec!["[unknown]"]));
        let unknown_total: u64 = p
            .stacks
            .iter()
            .filter(|(f, _)| f.len() == 1 && f[0].name == UNKNOWN)
            .map(|(_, c)| c)
            .sum();
        assert_eq!(unknown_total, 3, "empty stack and gone process both kept");
    }

    #[test]
    fn snapshots_accumulate_mappings() {
        let (dir, mut cache) = mk_cache_with_fake_proc(MAPS);
        std::fs::write(
            dir.path().join("42/maps"),
            "7e0000000000-7e0000001000 r-xp 00000000 08:01 5 /usr/lib/libnew.so\n",
        )
        .expect("write");
        cache.snapshot(42);
        assert!(cache.find(42, 0x7e0000000010).is_some());
        assert!(cache.find(42, 0x55d4c0a01010).is_some(), "old entries kept");
        assert!(cache.find(42, 0x55d4c0a00010).is_none(), "not executable");
    }
}
