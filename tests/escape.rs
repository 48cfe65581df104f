//! Escape attempts from root inside a real zone, one module per way out.

mod common;

#[path = "escape/syscalls.rs"]
mod syscalls;
