//! Hardware VMs on QEMU.
//!
//! - [`config`]: the typed VM configuration and the QEMU command line built from it
//! - [`qmp`]: a blocking client of QEMU's machine protocol
//! - [`accel`]: which accelerator this host can use (KVM or TCG), and why

pub mod accel;
pub mod config;
pub mod qmp;
