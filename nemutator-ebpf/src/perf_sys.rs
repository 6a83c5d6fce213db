//! Minimal `perf_event_open(2)` for callchain sampling on the software CPU
//! clock, with the mmap ring buffer read by hand.
//!
//! Layouts follow `<linux/perf_event.h>` (`struct perf_event_attr` up to
//! `PERF_ATTR_SIZE_VER8`, `struct perf_event_mmap_page`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
const PERF_SAMPLE_TID: u64 = 1 << 1;
const PERF_SAMPLE_CALLCHAIN: u64 = 1 << 5;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_FLAG_PID_CGROUP: libc::c_ulong = 1 << 2;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
/// `attr.flags` bits (the C bitfield, in declaration order).
const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;
const FLAG_FREQ: u64 = 1 << 10;
/// `_IO('$', 0)` / `_IO('$', 1)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
/// Callchain context markers (`enum perf_callchain_context`), as u64.
const PERF_CONTEXT_KERNEL: u64 = (-128i64) as u64;
const PERF_CONTEXT_USER: u64 = (-512i64) as u64;
/// Anything at or above this is a context marker, not an address.
const PERF_CONTEXT_MAX: u64 = (-4095i64) as u64;
/// Offsets of `data_head`, `data_tail`, `data_offset`, `data_size` in the
/// first (metadata) page of the ring.
const OFF_DATA_HEAD: usize = 1024;
const OFF_DATA_TAIL: usize = 1032;
const OFF_DATA_OFFSET: usize = 1040;
const OFF_DATA_SIZE: usize = 1048;

/// `struct perf_event_attr`, `PERF_ATTR_SIZE_VER8` (136 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period_or_freq: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
    aux_sample_size: u32,
    reserved_3: u32,
    sig_data: u64,
    config3: u64,
}

/// What a sampling event watches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    /// One thread, on any CPU.
    Thread(u32),
    /// Every task of a cgroup (v2 directory fd) on one CPU.
    Cgroup { fd: RawFd, cpu: u32 },
}

/// One decoded sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sample {
    pub pid: u32,
    /// Kernel addresses, leaf first.
    pub kernel: Vec<u64>,
    /// User addresses, leaf first.
    pub user: Vec<u64>,
}

/// A sampling perf event with its ring buffer mapped.
#[derive(Debug)]
pub(crate) struct SamplingEvent {
    fd: OwnedFd,
    base: NonNull<u8>,
    map_len: usize,
    data_offset: usize,
    data_size: usize,
}

// SAFETY: the mapping is owned by this value and only accessed through
// `&mut self` (reads) or on drop.
unsafe impl Send for SamplingEvent {}

impl SamplingEvent {
    /// Opens a CPU-clock sampling event at `freq_hz` with callchains and a
    /// ring of `data_pages` pages (a power of two). Starts disabled.
    pub fn open(scope: Scope, freq_hz: u32, data_pages: usize) -> io::Result<Self> {
        let attr = PerfEventAttr {
            type_: PERF_TYPE_SOFTWARE,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: PERF_COUNT_SW_CPU_CLOCK,
            sample_period_or_freq: u64::from(freq_hz),
            sample_type: PERF_SAMPLE_TID | PERF_SAMPLE_CALLCHAIN,
            flags: FLAG_DISABLED | FLAG_EXCLUDE_HV | FLAG_FREQ,
            ..Default::default()
        };
        let (pid, cpu, flags) = match scope {
            Scope::Thread(tid) => (tid as libc::pid_t, -1, PERF_FLAG_FD_CLOEXEC),
            Scope::Cgroup { fd, cpu } => (
                fd as libc::pid_t,
                cpu as libc::c_int,
                PERF_FLAG_FD_CLOEXEC | PERF_FLAG_PID_CGROUP,
            ),
        };
        // SAFETY: `attr` is a fully initialised perf_event_attr whose `size`
        // field matches its layout; the kernel only reads it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                pid,
                cpu,
                -1 as libc::c_int,
                flags,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(rc as RawFd) };

        let page = page_size();
        let map_len = page * (1 + data_pages.next_power_of_two());
        // SAFETY: mapping a fresh perf fd read-write shared, as perf requires;
        // the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        let mut ev = Self {
            fd,
            base,
            map_len,
            data_offset: page,
            data_size: map_len - page,
        };
        // Newer kernels say where the data area is; trust them when they do.
        let (off, size) = (ev.meta_u64(OFF_DATA_OFFSET), ev.meta_u64(OFF_DATA_SIZE));
        if off != 0 && size != 0 && (off + size) as usize <= map_len {
            ev.data_offset = off as usize;
            ev.data_size = size as usize;
        }
        Ok(ev)
    }

    /// Starts counting.
    pub fn enable(&self) -> io::Result<()> {
        self.ioctl(PERF_EVENT_IOC_ENABLE)
    }

    /// Stops counting; buffered samples stay readable.
    pub fn disable(&self) -> io::Result<()> {
        self.ioctl(PERF_EVENT_IOC_DISABLE)
    }

    fn ioctl(&self, req: libc::c_ulong) -> io::Result<()> {
        // SAFETY: plain ioctl on our own perf fd, without argument.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _, 0) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn meta_atomic(&self, off: usize) -> &AtomicU64 {
        // SAFETY: `off` is one of the 8-byte aligned u64 fields of the
        // metadata page, which stays mapped for the life of `self`; the
        // kernel updates it concurrently, hence the atomic view.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU64>() }
    }

    fn meta_u64(&self, off: usize) -> u64 {
        self.meta_atomic(off).load(Ordering::Acquire)
    }

    /// Drains the ring: calls `on_sample` for each sample and returns the
    /// number of samples the kernel reported lost.
    pub fn drain(&mut self, mut on_sample: impl FnMut(Sample)) -> u64 {
        let head = self.meta_atomic(OFF_DATA_HEAD).load(Ordering::Acquire);
        let mut tail = self.meta_atomic(OFF_DATA_TAIL).load(Ordering::Relaxed);
        let mut lost = 0;
        let mut rec = Vec::new();
        while tail + 8 <= head {
            let mut hdr = [0u8; 8];
            self.copy_out(tail, &mut hdr);
            let kind = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
            let size = u16::from_ne_bytes([hdr[6], hdr[7]]) as u64;
            if size < 8 || tail + size > head {
                break; // corrupt or torn record: drop the rest of this batch
            }
            rec.resize(size as usize, 0);
            self.copy_out(tail, &mut rec);
            match kind {
                PERF_RECORD_SAMPLE => {
                    if let Some(s) = parse_sample(&rec[8..]) {
                        on_sample(s);
                    }
                }
                PERF_RECORD_LOST => lost += read_u64(&rec, 16).unwrap_or(0),
                _ => {}
            }
            tail += size;
        }
        self.meta_atomic(OFF_DATA_TAIL)
            .store(tail.min(head), Ordering::Release);
        lost
    }

    /// Copies `out.len()` bytes from ring position `pos`, across the wrap.
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        let start = (pos % self.data_size as u64) as usize;
        let first = out.len().min(self.data_size - start);
        // SAFETY: both ranges lie inside the data area
        // [data_offset, data_offset + data_size) of our live mapping, and the
        // kernel does not write to bytes between tail and head.
        unsafe {
            let data = self.base.as_ptr().add(self.data_offset);
            std::ptr::copy_nonoverlapping(data.add(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, out.as_mut_ptr().add(first), out.len() - first);
        }
    }
}

impl Drop for SamplingEvent {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `open`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.map_len);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

fn read_u64(b: &[u8], off: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(off..off + 8)?.try_into().ok()?;
    Some(u64::from_ne_bytes(bytes))
}

/// Decodes the body of a `PERF_RECORD_SAMPLE` with
/// `PERF_SAMPLE_TID | PERF_SAMPLE_CALLCHAIN`: `pid, tid, nr, ips[nr]`.
pub(crate) fn parse_sample(body: &[u8]) -> Option<Sample> {
    let pid = u32::from_ne_bytes(body.get(0..4)?.try_into().ok()?);
    let nr = read_u64(body, 8)?;
    let n = usize::try_from(nr).ok()?;
    let ips = body.get(16..16usize.checked_add(n.checked_mul(8)?)?)?;
    let mut s = Sample {
        pid,
        kernel: Vec::new(),
        user: Vec::new(),
    };
    let mut in_kernel = true;
    for chunk in ips.chunks_exact(8) {
        let ip = u64::from_ne_bytes(chunk.try_into().ok()?);
        if ip >= PERF_CONTEXT_MAX {
            match ip {
                PERF_CONTEXT_KERNEL => in_kernel = true,
                PERF_CONTEXT_USER => in_kernel = false,
                _ => {} // hypervisor/guest contexts: not collected
            }
            continue;
        }
        if in_kernel {
            s.kernel.push(ip);
        } else {
            s.user.push(ip);
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_body(pid: u32, ips: &[u64]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(pid.to_ne_bytes());
        b.extend((pid + 1).to_ne_bytes());
        b.extend((ips.len() as u64).to_ne_bytes());
        for ip in ips {
            b.extend(ip.to_ne_bytes());
        }
        b
    }

    #[test]
    fn attr_has_the_ver8_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 136);
    }

    #[test]
    fn splits_callchains_at_context_markers() {
        let body = mk_body(
            42,
            &[
                PERF_CONTEXT_KERNEL,
                0xffff_ffff_8100_0000,
                0xffff_ffff_8100_0010,
                PERF_CONTEXT_USER,
                0x40_1000,
                0x40_2000,
            ],
        );
        let s = parse_sample(&body).expect("parses");
        assert_eq!(s.pid, 42);
        assert_eq!(s.kernel, vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0010]);
        assert_eq!(s.user, vec![0x40_1000, 0x40_2000]);
    }

    #[test]
    fn rejects_truncated_samples() {
        let mut body = mk_body(1, &[PERF_CONTEXT_USER, 1, 2]);
        body.truncate(body.len() - 1);
        assert!(parse_sample(&body).is_none());
        assert!(parse_sample(&[0; 7]).is_none());
        // an absurd count must not overflow or allocate
        let mut huge = mk_body(1, &[]);
        huge[8..16].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert!(parse_sample(&huge).is_none());
    }
}
