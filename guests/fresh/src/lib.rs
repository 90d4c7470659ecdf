//! Proves each execution starts from fresh memory: reports what it finds of the last one's
//! writes (a counter and text in the data segment, a buffer on the stack, memory grown for the
//! heap), then leaves its own marks everywhere for the next one to find. `?mib=N` sizes the heap
//! part (default 8 MiB: past what the pool resets in place, so both ways of resetting are seen).

use std::sync::atomic::{AtomicU64, Ordering};

use wasip2::http::types::{IncomingRequest, ResponseOutparam};

/// Executions this instance has seen: 0 in a fresh one.
static COUNT: AtomicU64 = AtomicU64::new(0);
/// Initialised data: must read as written here in every execution.
static mut TEXT: [u8; 16] = *b"initial contents";
/// The byte every mark is made of.
const MARK: u8 = 0xA5;

struct Fresh;

impl wasip2::exports::http::incoming_handler::Guest for Fresh {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let count = COUNT.fetch_add(1, Ordering::SeqCst);
        // One thread and one execution per instance: nothing else touches TEXT meanwhile.
        let text = unsafe { std::ptr::addr_of_mut!(TEXT).read_volatile() };
        let stack = stack_marks();
        let heap = heap_marks(kit::query_u64(&request, "mib", 8) as usize);
        unsafe { std::ptr::addr_of_mut!(TEXT).write_volatile(*b"MARKED BY A PAST") };
        kit::text(
            out,
            &format!(
                "count={count} text={} stack={stack} heap={heap}\n",
                String::from_utf8_lossy(&text)
            ),
        );
    }
}

/// Marked bytes found in a stack buffer before it is written, then marks it.
#[inline(never)]
fn stack_marks() -> usize {
    let mut buf = std::mem::MaybeUninit::<[u8; 32 * 1024]>::uninit();
    let ptr = buf.as_mut_ptr().cast::<u8>();
    // Reading stack memory as bytes is what this guest exists to do: whatever is there is some
    // byte value, and wasm has no uninitialised memory.
    let found = (0..32 * 1024)
        .filter(|&i| unsafe { ptr.add(i).read_volatile() } == MARK)
        .count();
    for i in 0..32 * 1024 {
        unsafe { ptr.add(i).write_volatile(MARK) };
    }
    std::hint::black_box(&buf);
    found
}

/// Marked bytes found in `mib` MiB of memory newly grown, then marks them all.
fn heap_marks(mib: usize) -> usize {
    let pages = mib * 16;
    let grown = core::arch::wasm32::memory_grow(0, pages);
    if grown == usize::MAX {
        return usize::MAX;
    }
    let base = (grown * 65536) as *mut u8;
    let len = pages * 65536;
    let found = (0..len)
        .filter(|&i| unsafe { base.add(i).read_volatile() } == MARK)
        .count();
    for i in 0..len {
        unsafe { base.add(i).write_volatile(MARK) };
    }
    found
}

wasip2::http::proxy::export!(Fresh);
