//! Hardware VMs on QEMU.
//!
//! The daemon chooses the accelerator once per host ([`accel::detect`]),
//! fills a [`config::VmConfig`] from a `kvm` or `bhyve` payload and hands
//! [`config::argv`] to the VM's monitor, which runs QEMU in the VM's jail
//! and drives it over QMP.
//!
//! - [`config`]: the typed VM configuration and the QEMU command line built from it
//! - [`qmp`]: a blocking client of QEMU's machine protocol
//! - [`accel`]: which accelerator this host can use (KVM or TCG), and why
//! - [`nocloud`]: the cloud-init NoCloud seed SmartOS gives a VM, and its FAT disk

pub mod accel;
pub mod config;
pub mod nocloud;
pub mod qmp;
