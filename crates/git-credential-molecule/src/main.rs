//! `git-credential-molecule`: parse arguments, hand over to the library, exit with its code.
//!
//! git starts this binary for every credential lookup, so its start-up is most of its cost.
//! It defines the C `main` itself (`#![no_main]`) instead of going through std's runtime
//! start-up, whose main-thread stack-guard setup alone (glibc's `pthread_getattr_np` reading
//! and parsing `/proc/self/maps`) was 22% of a cache hit's instructions and ~0.08 ms of wall
//! time. The two things that start-up does which matter here are done below, explicitly:
//! standard descriptors that git left closed are opened on `/dev/null` (so a file we open can
//! never become "stdout" and receive a token), and SIGPIPE is ignored (so a closed pipe is an
//! error to report, and a socket write to a vanished platform cannot kill the process).
//! Without std's start-up a stack overflow is a plain SIGSEGV instead of a message.

#![no_main]
// Every function of src/ fits on a screen (threshold in clippy.toml); integration tests,
// whose stories read top to bottom, are crates of their own and not held to it.
#![warn(clippy::too_many_lines)]

use std::ffi::{CStr, OsString, c_char, c_int};
use std::os::unix::ffi::OsStringExt;

#[expect(
    unsafe_code,
    reason = "the C entry point: std's start-up is replaced, see the module docs"
)]
#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    prepare_process();
    // SAFETY: the C runtime passes `argc` valid, NUL-terminated strings in `argv`.
    let args = unsafe { args(argc, argv) };
    c_int::from(git_credential_molecule::main_with_args(args))
}

/// The arguments as the C runtime handed them over (std's own copy is filled only by its
/// start-up on every libc, so it is not relied on).
///
/// # Safety
/// `argv` must hold `argc` valid pointers to NUL-terminated strings.
#[expect(unsafe_code, reason = "reading argv as the C runtime passes it")]
unsafe fn args(argc: c_int, argv: *const *const c_char) -> Vec<OsString> {
    (0..usize::try_from(argc).unwrap_or(0))
        .filter_map(|i| {
            // SAFETY: i < argc, and the caller vouches for argv[0..argc].
            let arg = unsafe { *argv.add(i) };
            // SAFETY: non-null argv entries are NUL-terminated strings (caller's promise).
            (!arg.is_null())
                .then(|| OsString::from_vec(unsafe { CStr::from_ptr(arg) }.to_bytes().to_vec()))
        })
        .collect()
}

/// What std's runtime start-up would have done that this process depends on.
#[expect(
    unsafe_code,
    reason = "fcntl, open and signal on the process's own descriptors"
)]
fn prepare_process() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only inspects the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // The lowest free descriptor is `fd` itself: /dev/null fills the hole.
            // SAFETY: a constant NUL-terminated path and plain flags.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
