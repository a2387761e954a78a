//! zombie-daemon's kernel side: one program per tracepoint, one ring buffer to userspace.
//!
//! Every struct offset comes from the running kernel's BTF through the `OFFSETS` global that
//! userspace fills in before loading; nothing of the build machine's layouts is compiled in.
#![no_std]
#![no_main]

mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
