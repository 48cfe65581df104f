//! A blocking client of QEMU's machine protocol (QMP).
