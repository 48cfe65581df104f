//! Which accelerator this host can use (KVM or TCG), and why.
