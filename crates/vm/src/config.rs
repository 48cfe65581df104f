//! The typed VM configuration and the QEMU command line built from it.
